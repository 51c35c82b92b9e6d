"""Backbone artifacts for tests, by the export contract (``backbone.onnx``:
float32 NCHW in, [N, embedding_dim] out, dynamic batch, one file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from fedge.models.model import LoadedBackbone


def export_onnx(
    loaded: LoadedBackbone, out_dir: Path, formats: Sequence[str] = ("onnx",)
) -> dict[str, Path]:
    """An exporter (``server.artifacts.Exporter``) for ONNX through torch.onnx's
    torch.export-based exporter, as the export issue specifies."""
    assert tuple(formats) == ("onnx",), f"this test exporter writes ONNX only, not {formats}"
    size = loaded.preprocessing.image_size
    path = out_dir / "backbone.onnx"
    module = loaded.module.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        module,
        (torch.randn(2, 3, size, size),),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_shapes=({0: batch},),
    )
    return {"onnx": path}
