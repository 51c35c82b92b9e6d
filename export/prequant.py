"""Put a model's weights on the int8 grid the quantizer will use, and correct
the biases for the error that rounding makes (empirical bias correction,
Nagel et al., "Data-Free Quantization", 2019), before conversion.

ai-edge-quantizer quantizes each convolution's and linear layer's weights per
output channel, symmetric, with ``scale = max|w| / 127``, and rounds; with
BatchNorm folded into the convolution first. Rounding shifts the mean of every
output channel a little, and the shifts add up through the network. Here:

1. BatchNorm is folded into the convolution before it (as the converter does);
2. layer by layer, in forward order, the weights are rounded to that same grid
   (so the quantizer later finds them on its grid and keeps them exactly), and
   the layer's bias absorbs the mean output change the rounding causes on
   calibration images, measured with the earlier layers already rounded.

The result is an ordinary float model that ``export_tflite`` converts; the
quantizer then stores its weights as int8 without further error. Nothing of
the quantizer is patched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

QMAX = 127


@dataclass(frozen=True)
class PrequantStats:
    layers: int  # layers rounded and corrected
    kept_float: int  # leading convolutions left as they are
    samples: int  # calibration images the corrections were measured on
    folded_max_abs_diff: float  # folding BatchNorm changed the outputs by at most this

    def to_dict(self) -> dict[str, float | int]:
        return {
            "bias_correction_layers": self.layers,
            "bias_correction_samples": self.samples,
            "leading_float_convs": self.kept_float,
        }


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each ``Conv2d`` followed (in registration
    order, as in torchvision's models) by a ``BatchNorm2d`` fused into one."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:], strict=False):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                setattr(parent, name_a, fuse_conv_bn_eval(a, b))
                setattr(parent, name_b, nn.Identity())
    return model


def grid_round(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 rounding, ``scale = max|w| / 127``."""
    dims = tuple(range(1, weight.dim()))
    scale = weight.abs().amax(dim=dims, keepdim=True) / QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(weight / scale), -QMAX, QMAX) * scale


def _output_shift(layer: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Mean change of each output channel when the weights change by ``delta``."""
    if isinstance(layer, nn.Linear):
        return (x.reshape(-1, x.shape[-1]) @ delta.T).mean(0)
    out = nn.functional.conv2d(
        x, delta, None, layer.stride, layer.padding, layer.dilation, layer.groups
    )
    return out.mean(dim=(0, 2, 3))


@torch.no_grad()
def prequantize(
    model: nn.Module, calibration: torch.Tensor, keep_float: int = 0
) -> tuple[nn.Module, PrequantStats]:
    """A copy of ``model`` (BatchNorm folded) with int8-grid weights and
    bias-corrected outputs. ``calibration``: model inputs (one batch); the
    first ``keep_float`` convolutions stay untouched (they stay float in the
    quantized file)."""
    folded = fold_batchnorm(model)
    probe = calibration[: min(len(calibration), 4)]
    diff = float((folded(probe) - model.eval()(probe)).abs().max())
    layers = [m for m in folded.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: order.append(m)) for m in layers]
    folded(probe[:1])
    for h in hooks:
        h.remove()
    convs = [m for m in order if isinstance(m, nn.Conv2d)]
    skip = {id(m) for m in convs[:keep_float]}
    done: set[int] = set()

    def correct(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if id(layer) in skip or id(layer) in done:
            return
        done.add(id(layer))
        rounded = grid_round(layer.weight)
        shift = _output_shift(layer, inputs[0], rounded - layer.weight)
        layer.weight.copy_(rounded)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros_like(shift), requires_grad=False)
        layer.bias.sub_(shift)

    hooks = [m.register_forward_pre_hook(correct) for m in layers]
    try:
        folded(calibration)  # one pass: each layer sees inputs of the rounded layers before it
    finally:
        for h in hooks:
            h.remove()
    for p in folded.parameters():
        p.requires_grad_(False)
    stats = PrequantStats(len(done), len(skip), len(calibration), diff)
    return folded, stats
