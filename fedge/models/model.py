"""The model of a run: a frozen backbone (with its weights, preprocessing and
fingerprint, one object) plus a trainable head, and the state that travels."""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedge.config import FedgeConfig
from fedge.models.backbones import Backbone, build_backbone, preprocessing_for
from fedge.models.fingerprint import backbone_fingerprint, state_dict_sha256
from fedge.models.heads import build_head
from fedge.models.preprocessing import Preprocessing


@dataclass(frozen=True)
class LoadedBackbone:
    """A backbone with the weights and preprocessing it needs, and their hash."""

    name: str
    weights: str
    preprocessing: Preprocessing
    fingerprint: str
    module: Backbone

    def describe(self) -> str:
        return (
            f"backbone={self.name} weights={self.weights} "
            f"image-size={self.preprocessing.image_size}"
        )


def _weights_identity(weights: str) -> tuple[str, float, int]:
    if weights in ("imagenet", "none"):
        return (weights, 0.0, 0)
    st = os.stat(weights) if os.path.isfile(weights) else None
    return (os.path.abspath(weights), st.st_mtime if st else 0.0, st.st_size if st else 0)


@functools.lru_cache(maxsize=4)
def _load_cached(
    name: str, weights_id: tuple[str, float, int], weights: str, image_size: int, seed: int
) -> LoadedBackbone:
    module = build_backbone(name, weights, seed=seed)
    pre = preprocessing_for(name, image_size)
    fp = backbone_fingerprint(name, state_dict_sha256(module.state_dict()), pre)
    return LoadedBackbone(name, weights, pre, fp, module)


def load_backbone(name: str, weights: str, image_size: int, seed: int = 0) -> LoadedBackbone:
    """Build (once per process) the frozen backbone a config names."""
    return _load_cached(name, _weights_identity(weights), weights, image_size, seed)


def load_backbone_for(cfg: FedgeConfig) -> LoadedBackbone:
    return load_backbone(cfg.backbone, cfg.weights, cfg.image_size, cfg.seed)


class FedgeModel(nn.Module):
    """``head(backbone(x))``; ``forward_features``/``forward_head`` split like timm."""

    def __init__(self, backbone: Backbone, head: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.preprocessing = preprocessing

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_model(
    cfg: FedgeConfig, num_classes: int, loaded: LoadedBackbone | None = None
) -> FedgeModel:
    """Backbone (frozen but the last ``unfreeze-last`` blocks) + a fresh head."""
    loaded = loaded or load_backbone_for(cfg)
    backbone = loaded.module
    if cfg.unfreeze_last:
        backbone = copy.deepcopy(backbone)
        backbone.freeze(cfg.unfreeze_last)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        head = build_head(cfg.head, backbone.embedding_dim, num_classes, cfg.mlp_hidden)
    return FedgeModel(backbone, head, loaded.preprocessing)


def trainable_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The parameters that train, and therefore travel, as numpy arrays."""
    return {
        name: p.detach().cpu().numpy().copy()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copy received trainable parameters into ``model``; keys must match exactly."""
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(arrays) != expected:
        raise ValueError(
            "received parameters do not match this model's trainable parameters: "
            f"unexpected {sorted(set(arrays) - expected)[:3]}, missing "
            f"{sorted(expected - set(arrays))[:3]}. Are server and client using the "
            "same head and unfreeze-last?"
        )
    with torch.no_grad():
        for name, value in arrays.items():
            p = params[name]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"parameter '{name}' has shape {value.shape}, expected {tuple(p.shape)}."
                )
            p.copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
