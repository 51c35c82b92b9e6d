"""Local training and evaluation of the trainable part, free of Flower.

The fast path trains the head on cached embeddings. When the cache is off or
backbone blocks are unfrozen, images go through the backbone every epoch.
Batch order comes from numpy so other runtimes can reproduce it exactly
(``client/local_training.py``, shared with the edge clients' numpy trainer).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from client.local_training import EvalResult, TrainResult, TrainSettings, batch_order
from fedge.data.federated import Subset
from fedge.embeddings.batches import load_batch
from fedge.metrics import confusion_matrix
from fedge.models.model import FedgeModel

__all__ = [
    "EvalResult",
    "TrainResult",
    "TrainSettings",
    "batch_order",
    "evaluate_head",
    "make_optimizer",
    "train_end_to_end",
    "train_head",
]


def make_optimizer(params: list[nn.Parameter], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def _proximal_term(
    params: list[nn.Parameter], anchor: list[torch.Tensor], mu: float
) -> torch.Tensor:
    return (mu / 2) * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))


Step = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor] | None]


def _fit(
    params: list[nn.Parameter], step: Step, n: int, s: TrainSettings, order_seed: tuple[int, ...]
) -> tuple[float, float, int]:
    """The shared loop: cross-entropy (+ FedProx term) over seeded batches.

    ``step(batch_indices)`` returns (logits, targets), or None to skip a batch.
    Returns mean loss, accuracy and the number of samples seen per epoch.
    """
    anchor = [p.detach().clone() for p in params]
    opt = make_optimizer(params, s)
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in batch_order(n, s.batch_size, s.epochs, order_seed):
        out = step(batch)
        if out is None:
            continue
        logits, targets = out
        loss = nn.functional.cross_entropy(logits, targets)
        total = loss + _proximal_term(params, anchor, s.proximal_mu) if s.proximal_mu else loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        loss_sum += loss.item() * len(targets)
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(targets)
    return loss_sum / max(1, seen), correct / max(1, seen), seen // max(1, s.epochs)


def train_head(
    head: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    s: TrainSettings,
    *,
    order_seed: tuple[int, ...],
    device: torch.device,
) -> TrainResult:
    """Train ``head`` on embeddings ``x`` (N, D) with labels ``y``."""
    start = time.perf_counter()
    head.to(device).train()
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)

    def step(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        bi = torch.from_numpy(batch).to(device)
        return head(xt[bi]), yt[bi]

    params = [p for p in head.parameters() if p.requires_grad]
    loss, acc, n = _fit(params, step, len(y), s, order_seed)
    head.eval()
    return TrainResult(loss, acc, n, time.perf_counter() - start)


@torch.no_grad()
def evaluate_head(
    head: nn.Module, x: np.ndarray, y: np.ndarray, num_classes: int, device: torch.device
) -> EvalResult:
    head.to(device).eval()
    if len(y) == 0:
        return EvalResult(0.0, np.zeros((num_classes, num_classes), np.int64), 0)
    logits = head(torch.from_numpy(x).to(device))
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    loss = float(nn.functional.cross_entropy(logits, yt))
    pred = logits.argmax(1).cpu().numpy()
    return EvalResult(loss, confusion_matrix(y, pred, num_classes), len(y))


def train_end_to_end(
    model: FedgeModel,
    data: Subset,
    labels: np.ndarray,
    s: TrainSettings,
    *,
    order_seed: tuple[int, ...],
    device: torch.device,
) -> TrainResult:
    """Train through the backbone every step (no embedding cache); ``labels``
    are those of ``data`` in the server's class order."""
    start = time.perf_counter()
    model.to(device).train()

    def step(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        images, ok = load_batch(data.source, data.indices[batch], model.preprocessing)
        if not ok.any():
            return None
        x = torch.from_numpy(images[ok]).to(device)
        return model(x), torch.from_numpy(labels[batch][ok].astype(np.int64)).to(device)

    params = [p for p in model.parameters() if p.requires_grad]
    loss, acc, n = _fit(params, step, len(data), s, order_seed)
    model.eval()
    return TrainResult(loss, acc, n, time.perf_counter() - start)
