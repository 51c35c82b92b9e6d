"""Backbone zoo: torchvision builders, their weights and their embeddings.

One registry maps a config name to a builder that returns a :class:`Backbone`:
an ``nn.Module`` whose ``forward`` is the pooled embedding (timm's
``forward_features`` + pooling), split into ordered ``blocks`` so that the
last N can be unfrozen.
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from fedge.errors import FedgeError
from fedge.models.preprocessing import Preprocessing


class WeightsError(FedgeError, RuntimeError):
    """Backbone weights that cannot be found, fetched or loaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a config name stands for."""

    name: str
    embedding_dim: int
    classifier_prefixes: tuple[str, ...]
    interpolation: str = "bilinear"


SPECS: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec("mobilenet_v2", 1280, ("classifier.",)),
        BackboneSpec("mobilenet_v3_small", 576, ("classifier.",)),
        BackboneSpec("mobilenet_v3_large", 960, ("classifier.",)),
        BackboneSpec("resnet18", 512, ("fc.",)),
        BackboneSpec("efficientnet_b0", 1280, ("classifier.",), "bicubic"),
    )
}


def list_backbones() -> list[str]:
    return list(SPECS)


def get_spec(name: str) -> BackboneSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown backbone '{name}'; available: {', '.join(SPECS)}.") from None


class Backbone(nn.Module):
    """A frozen feature extractor: ``blocks`` then global average pooling."""

    def __init__(self, name: str, blocks: list[nn.Module], embedding_dim: int) -> None:
        super().__init__()
        self.name = name
        self.blocks = nn.Sequential(*blocks)
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def freeze(self, unfreeze_last: int = 0) -> None:
        """Freeze all parameters but those of the last ``unfreeze_last`` blocks."""
        n = len(self.blocks)
        if unfreeze_last > n:
            raise ValueError(
                f"unfreeze-last={unfreeze_last} but backbone '{self.name}' has only "
                f"{n} blocks; use 0..{n}."
            )
        for i, block in enumerate(self.blocks):
            trainable = i >= n - unfreeze_last
            for p in block.parameters():
                p.requires_grad_(trainable)

    def train(self, mode: bool = True) -> Backbone:
        # BatchNorm statistics stay frozen even in unfrozen blocks: only
        # parameters are fine-tuned, so the state that travels is parameters.
        super().train(False)
        return self


def _blocks_of(name: str, model: nn.Module) -> list[nn.Module]:
    if name == "resnet18":
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    return list(model.features.children())


def _torchvision_weights(name: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_model_weights(name).DEFAULT


def imagenet_cache_path(name: str) -> Path:
    """Where torchvision keeps (or would download) the official weights."""
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _official_state_dict(name: str) -> dict[str, torch.Tensor]:
    weights = _torchvision_weights(name)
    cached = imagenet_cache_path(name)
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise WeightsError(
            f"weights=imagenet: torchvision's {weights} for '{name}' are not cached "
            f"at {cached} and could not be downloaded ({e}). Fix: run once with "
            f"internet access, or copy the file {os.path.basename(weights.url)} to "
            f"{cached.parent}/, or set weights to a local state_dict file, e.g. "
            "weights=../shared/assets/weights/mobilenet_v2-imagenet-int8dequant.pth."
        ) from e


def _file_state_dict(path: str) -> dict[str, torch.Tensor]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(
            f"weights='{path}' is neither `imagenet`, `none` nor an existing file. "
            "Give a path to a torchvision state_dict (.pth/.pt/.safetensors)."
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise WeightsError(f"weights file '{p}' could not be read: {e}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file '{p}' does not hold a state_dict.")
    return state


def resolve_state_dict(name: str, weights: str) -> dict[str, torch.Tensor] | None:
    """The torchvision state_dict that ``weights`` names (None for random init)."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return _official_state_dict(name)
    return _file_state_dict(weights)


def _load_backbone_weights(
    model: nn.Module, state: dict[str, torch.Tensor], spec: BackboneSpec, source: str
) -> None:
    """Load all non-classifier weights; the classifier may differ or be absent."""
    own = {
        k: v for k, v in model.state_dict().items() if not k.startswith(spec.classifier_prefixes)
    }
    given = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(given))
    if missing:
        raise WeightsError(
            f"weights '{source}' do not fit backbone '{spec.name}': {len(missing)} "
            f"tensors missing (first: {missing[:3]}). Is it a state_dict of "
            f"torchvision's {spec.name}?"
        )
    bad = [k for k, v in given.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise WeightsError(
            f"weights '{source}' do not fit backbone '{spec.name}': shape mismatch for {bad[:3]}."
        )
    model.load_state_dict(given, strict=False)


def build_backbone(name: str, weights: str, seed: int = 0) -> Backbone:
    """Build a frozen backbone named in the registry, with ``weights`` loaded."""
    spec = get_spec(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # weights=none: same random backbone everywhere
        model = torchvision.models.get_model(name, weights=None)
    state = resolve_state_dict(name, weights)
    if state is not None:
        _load_backbone_weights(model, state, spec, weights)
    backbone = Backbone(name, _blocks_of(name, model), spec.embedding_dim)
    backbone.freeze(0)
    backbone.eval()
    return backbone


def preprocessing_for(name: str, image_size: int) -> Preprocessing:
    return Preprocessing(image_size=image_size, interpolation=get_spec(name).interpolation)
