"""Backbone artifacts for tests, by the export contract (``backbone.onnx``:
float32 NCHW in, [N, embedding_dim] out, dynamic batch, one file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from fedge.artifacts import ArtifactInfo
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


def export_tflite(
    loaded: LoadedBackbone, out_dir: Path, formats: Sequence[str] = ("tflite",)
) -> dict[str, Path]:
    """An exporter for fp32 TFLite (batch 1, NCHW) through litert-torch."""
    import litert_torch

    assert tuple(formats) == ("tflite",), f"this test exporter writes TFLite only, not {formats}"
    size = loaded.preprocessing.image_size
    path = out_dir / "backbone.tflite"
    litert_torch.convert(loaded.module.eval(), (torch.randn(1, 3, size, size),)).export(str(path))
    return {"tflite": path}


def available_exporters() -> dict[str, object]:
    """Exporters this environment has, by format: fedge's own (the export
    issue's ``export/backbone.py``) when present, else the test helpers."""
    import importlib.util

    try:
        from export.backbone import export_backbone  # noqa: F401

        return {"onnx": export_backbone, "tflite": export_backbone}
    except ImportError:
        pass
    found: dict[str, object] = {}
    if importlib.util.find_spec("onnxscript") is not None:
        found["onnx"] = export_onnx
    if importlib.util.find_spec("litert_torch") is not None:
        found["tflite"] = export_tflite
    return found


def export_all(config_values: dict[str, object], out: Path) -> dict[str, tuple[Path, ArtifactInfo]]:
    """The backbone ``config_values`` names, exported in every format this
    environment can: ``{format: (out/backbone.<format>, info)}``."""
    import tempfile

    from fedge.config import FedgeConfig
    from fedge.models.model import load_backbone_for
    from server.artifacts import BackboneArtifacts

    loaded = load_backbone_for(FedgeConfig.from_mapping(config_values))
    found: dict[str, tuple[Path, ArtifactInfo]] = {}
    for fmt, exporter in available_exporters().items():
        with tempfile.TemporaryDirectory() as tmp:
            files = exporter(loaded, Path(tmp), (fmt,))  # type: ignore[operator]
            artifacts = BackboneArtifacts(loaded, Path(tmp) / "cache")
            info = artifacts.adopt(fmt, files[fmt])
            target = out / f"backbone.{fmt}"
            artifacts.get(fmt)[0].replace(target)
        found[fmt] = (target, info)
    return found
