"""Modules that give an exported graph the input an app feeds it: NCHW or NHWC
layout, and optionally uint8 pixels normalized inside the graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from export.manifest import InputSpec
from export.runtimes import prepare_input
from fedge.models.preprocessing import Preprocessing


class ExportInput(nn.Module):
    """``inner`` (which takes normalized float NCHW) behind the input ``spec``.

    Baked preprocessing folds ``(x / 255 - mean) / std`` into one multiply-add
    per channel; an NHWC layout adds a permute, which TFLite's NHWC kernels
    absorb (no TRANSPOSE op is left in the converted graph).
    """

    def __init__(self, inner: nn.Module, spec: InputSpec, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.inner = inner
        self.spec = spec
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32)
        std = torch.tensor(preprocessing.std, dtype=torch.float32)
        shape = (1, 3, 1, 1) if spec.layout == "nchw" else (1, 1, 1, 3)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(shape))
        self.register_buffer("shift", (-mean / std).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.baked:
            x = x.to(torch.float32) * self.scale + self.shift
        if self.spec.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)
        return self.inner(x)


def wrap(inner: nn.Module, spec: InputSpec, preprocessing: Preprocessing) -> nn.Module:
    """``inner`` as is for the plain float NCHW contract, else wrapped."""
    if spec == InputSpec():
        return inner.eval()
    return ExportInput(inner, spec, preprocessing).eval()


def sample_input(
    spec: InputSpec, preprocessing: Preprocessing, batch: int = 1, seed: int = 0
) -> torch.Tensor:
    """A random example input of the right dtype and layout (for tracing)."""
    size = preprocessing.image_size
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    return torch.from_numpy(
        prepare_input(images, spec.layout, spec.baked, preprocessing.mean, preprocessing.std)
    )
