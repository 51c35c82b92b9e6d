"""PyTorch -> ONNX with the torch.export-based exporter: one self-contained file,
dynamic batch, fedge facts in ``metadata_props``, checked by ``onnx.checker``
and by a run in ONNX Runtime."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.manifest import metadata_props

INPUT_NAME = "input"


class OnnxExportError(RuntimeError):
    """The exporter failed, or its file does not check or run."""


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress lines ("[torch.onnx] Obtain model graph..."):
    keep them off the console unless it fails."""
    buffer = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        logger.setLevel(level)


def export_onnx(
    module: nn.Module,
    sample: torch.Tensor,
    path: Path,
    output_name: str,
    metadata: Mapping[str, object],
    opset: int = 18,
) -> Path:
    """Export ``module`` (one tensor in, one out) to ``path`` with a dynamic
    batch dimension named ``batch`` and ``metadata`` as ``fedge.*`` props."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    module = module.eval()
    with _quiet_exporter() as log, torch.no_grad():
        try:
            program = torch.onnx.export(
                module,
                (sample,),
                None,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
            )
        except Exception as e:  # the exporter raises many types
            raise OnnxExportError(f"torch.onnx.export failed: {e}\n{log.getvalue()}") from e
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata_props(metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path), save_as_external_data=False)
    check_onnx(path, module, sample)
    return path


def check_onnx(
    path: Path, module: nn.Module | None = None, sample: torch.Tensor | None = None
) -> None:
    """``onnx.checker`` (full check), then a run in ONNX Runtime at batch 1 and
    batch 3 compared with ``module`` when given."""
    import onnx

    from export.runtimes import OnnxRunner

    try:
        onnx.checker.check_model(str(path), full_check=True)
        runner = OnnxRunner(path)
    except Exception as e:  # checker and ORT raise their own types
        raise OnnxExportError(
            f"'{path.name}' does not pass onnx.checker / ONNX Runtime: {e}"
        ) from e
    if module is None or sample is None:
        return
    batch = torch.cat([sample[:1], sample[:1].flip(-1), sample[:1].flip(-2)])
    with torch.no_grad():
        expected = module(batch).numpy()
    got = runner.run(batch.numpy())
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-3):
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("nan")
        raise OnnxExportError(
            f"'{path.name}' in ONNX Runtime differs from PyTorch at batch 3: output "
            f"{got.shape} vs {expected.shape}, max abs diff {diff:.3g}"
        )
