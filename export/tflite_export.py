"""PyTorch -> TFLite (fp32) through LiteRT's converter, ``litert_torch``.

The converter fixes the batch at the example's size (1); interpreters resize
it at run time (``resize_tensor_input``), which :mod:`export.runtimes` does.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from export.quantize import quiet_litert


class TFLiteExportError(RuntimeError):
    """The LiteRT converter failed."""


def import_litert_torch():  # noqa: ANN201 - a module
    quiet_litert()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import litert_torch
    except ImportError as e:
        raise TFLiteExportError(
            'TFLite export needs litert-torch: pip install -e ".[dev,export]" '
            "(in one pip command with the rest, see README 'Export and on-device inference')"
        ) from e
    return litert_torch


def export_tflite(module: nn.Module, sample: torch.Tensor, path: Path) -> Path:
    """Convert ``module`` for an input like ``sample`` (batch 1) to ``path``."""
    litert_torch = import_litert_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            converted = litert_torch.convert(module.eval(), (sample[:1],))
            converted.export(str(path))
    except Exception as e:  # the converter raises many types
        raise TFLiteExportError(f"litert_torch.convert failed: {e}\n{log.getvalue()}") from e
    return path
