"""Centralized references for a federation: the same clients' training
samples pooled on one machine, and the server's held-out split.

- ``logistic_probe``: the usual linear probe, a softmax regression trained to
  convergence (full-batch L-BFGS, a little L2) on the pooled embeddings.
- the closed-form head of the pooled statistics (what ``strategy =
  closed-form`` must reproduce, whatever the label skew).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedge.config import FedgeConfig
from fedge.data.federated import Subset, server_test, simulated_client
from fedge.device import resolve_device
from fedge.embeddings.cache import embed_subset
from fedge.models.model import load_backbone_for


@dataclass
class Embedded:
    x: np.ndarray
    y: np.ndarray


def _embed(cfg: FedgeConfig, subset: Subset) -> Embedded:
    z = embed_subset(cfg, load_backbone_for(cfg), subset, resolve_device(cfg.device))
    ok = ~np.isnan(z).any(axis=1)
    return Embedded(z[ok], subset.labels[ok])


def pooled_train(cfg: FedgeConfig) -> Embedded:
    """Every simulated client's training samples, together."""
    parts = [
        _embed(cfg, simulated_client(cfg, pid, cfg.num_clients).train)
        for pid in range(cfg.num_clients)
    ]
    return Embedded(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def held_out(cfg: FedgeConfig) -> Embedded:
    """The server's held-out split, as the federation evaluates on it."""
    return _embed(cfg, server_test(cfg)[1])


def logistic_probe(
    x: np.ndarray, y: np.ndarray, num_classes: int, l2: float = 1e-4, max_iter: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression on ``x`` fitted by full-batch L-BFGS: weight (K, d), bias (K,)."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    layer = torch.nn.Linear(xt.shape[1], num_classes)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(
        layer.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt), yt)
        loss = loss + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return layer.weight.detach().numpy(), layer.bias.detach().numpy()


def accuracy(weight: np.ndarray, bias: np.ndarray, data: Embedded) -> float:
    return float(((data.x @ weight.T + bias).argmax(1) == data.y).mean())
