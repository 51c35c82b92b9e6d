"""The frozen backbone alone, for clients that compute embeddings on a device
and train the head there (see ``client/`` edge runtime).

Contract (relied on by edge clients; keep it):

- ``backbone.onnx``: input ``input`` float32 NCHW ``[N, 3, S, S]``, images
  resized to ``S = image_size``, scaled to [0, 1] and normalized with
  ``(x - mean) / std``; dynamic batch; output ``embedding`` float32
  ``[N, embedding_dim]``. Its facts are ONNX ``metadata_props`` (``fedge.*``).
- ``backbone.tflite``: the same input and output, fp32, batch 1 (resize the
  input tensor for other batch sizes); its facts in the sidecar
  ``backbone.json``.
- The facts: ``fingerprint``, ``preprocessing`` (``image_size``, ``mean``,
  ``std``, ``interpolation``), ``embedding_dim``, ``backbone`` (name, weights),
  ``input``, ``output``; read them with :func:`read_backbone_info`.

Importing this module does not import torch (only :func:`export_backbone` does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.manifest import (
    ArtifactEntry,
    InputSpec,
    describe_artifact,
    package_versions,
    sidecar_path,
    write_json,
)
from fedge.artifacts import file_sha256
from fedge.models.preprocessing import Preprocessing

if TYPE_CHECKING:
    from fedge.models.model import LoadedBackbone

FORMATS = ("onnx", "tflite")
OUTPUT_NAME = "embedding"
STEM = "backbone"


@dataclass(frozen=True)
class BackboneInfo:
    """What an app or an edge client needs to use a backbone artifact."""

    path: Path
    fingerprint: str
    preprocessing: Preprocessing
    embedding_dim: int
    input: InputSpec
    backbone: str

    @classmethod
    def from_facts(cls, path: Path, facts: Mapping[str, Any]) -> BackboneInfo:
        return cls(
            path=path,
            fingerprint=str(facts["fingerprint"]),
            preprocessing=Preprocessing.from_dict(facts["preprocessing"]),
            embedding_dim=int(facts["embedding_dim"]),
            input=InputSpec.from_dict(facts.get("input", {})),
            backbone=str(facts.get("backbone", {}).get("name", "")),
        )


def read_backbone_info(path: str | Path) -> BackboneInfo:
    """The facts of a ``backbone.onnx`` / ``backbone.tflite`` (torch-free)."""
    path = Path(path)
    return BackboneInfo.from_facts(path, describe_artifact(path))


def backbone_facts(loaded: LoadedBackbone) -> dict[str, Any]:
    """Fingerprint, preprocessing and embedding size of a loaded backbone."""
    return {
        "kind": "backbone",
        "fingerprint": loaded.fingerprint,
        "preprocessing": loaded.preprocessing.to_dict(),
        "embedding_dim": int(loaded.module.embedding_dim),
        "backbone": {"name": loaded.name, "weights": loaded.weights},
    }


def backbone_entry(file: str, fmt: str, image_size: int, embedding_dim: int) -> ArtifactEntry:
    spec = InputSpec()
    batch: int | str = "batch" if fmt == "onnx" else 1
    return ArtifactEntry(
        file=file,
        kind="backbone",
        format=fmt,
        precision="fp32",
        input={**spec.to_dict(image_size), "name": "input", "shape": spec.shape(image_size, batch)},
        output={"name": OUTPUT_NAME, "dtype": "float32", "shape": [batch, embedding_dim]},
    )


def export_backbone(
    loaded: LoadedBackbone,
    out_dir: Path,
    formats: Sequence[str] = FORMATS,
    extra_facts: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``backbone.onnx`` and/or ``backbone.tflite`` (and ``backbone.json``
    for the TFLite file) into ``out_dir``; return ``{format: path}``.

    Needs no run directory: ``loaded`` is e.g. ``load_backbone_for(cfg)``.
    ``extra_facts`` (e.g. versions, the run) are recorded beside the others.
    """
    from export.onnx_export import export_onnx
    from export.tflite_export import export_tflite
    from export.wrappers import sample_input

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown backbone formats {sorted(unknown)}; allowed: {FORMATS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = loaded.module.eval()
    pre = loaded.preprocessing
    facts = {**backbone_facts(loaded), "versions": package_versions(), **(extra_facts or {})}
    dim = facts["embedding_dim"]
    written: dict[str, Path] = {}
    if "onnx" in formats:
        entry = backbone_entry(f"{STEM}.onnx", "onnx", pre.image_size, dim)
        meta = {**facts, **_entry_facts(entry)}
        written["onnx"] = export_onnx(
            module, sample_input(InputSpec(), pre, batch=2), out_dir / entry.file, OUTPUT_NAME, meta
        )
    if "tflite" in formats:
        entry = backbone_entry(f"{STEM}.tflite", "tflite", pre.image_size, dim)
        path = export_tflite(module, sample_input(InputSpec(), pre), out_dir / entry.file)
        entry.size_bytes, entry.sha256 = path.stat().st_size, file_sha256(path)
        write_json(sidecar_path(path), {**facts, **entry.to_dict()})
        written["tflite"] = path
    return written


def _entry_facts(entry: ArtifactEntry) -> dict[str, Any]:
    """The per-file facts that also go into the file itself (no size/hash)."""
    d = entry.to_dict()
    return {k: d[k] for k in ("file", "kind", "format", "precision", "input", "output")}
