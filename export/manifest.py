"""What an exported file expects and where it came from: ``manifest.json``,
ONNX ``metadata_props`` and the sidecar ``<stem>.json`` of a TFLite file.

Torch-free (numpy and the standard library only): apps, edge clients and
``fedge predict`` read these facts without PyTorch.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedge.errors import FedgeError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
LAYOUTS = ("nchw", "nhwc")
# ONNX metadata_props keys carry this prefix; values are JSON text.
META_PREFIX = "fedge."
# The packages whose versions a manifest records.
VERSIONED_PACKAGES = (
    "fedge",
    "torch",
    "torchvision",
    "numpy",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "litert-torch",
    "ai-edge-litert",
    "ai-edge-quantizer",
)


class ArtifactError(FedgeError, ValueError):
    """An exported file whose description is missing or unreadable."""


@dataclass(frozen=True)
class InputSpec:
    """The input tensor of an exported graph.

    ``baked=False``: float32 images, resized, scaled to [0, 1] and normalized
    with ``(x - mean) / std`` by the caller. ``baked=True``: uint8 RGB images
    resized to the model's size; the graph normalizes them itself.
    """

    layout: str = "nchw"
    baked: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(
                f"input layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}"
            )

    @property
    def dtype(self) -> str:
        return "uint8" if self.baked else "float32"

    def shape(self, image_size: int, batch: int | str = "batch") -> list[int | str]:
        if self.layout == "nchw":
            return [batch, 3, image_size, image_size]
        return [batch, image_size, image_size, 3]

    def describe(self) -> str:
        if self.baked:
            return f"uint8 RGB {self.layout.upper()} (0..255); normalization inside the graph"
        return f"float32 RGB {self.layout.upper()}, scaled to [0,1] then (x - mean) / std"

    def to_dict(self, image_size: int) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "dtype": self.dtype,
            "baked_preprocessing": self.baked,
            "shape": self.shape(image_size),
            "description": self.describe(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        return cls(layout=str(d.get("layout", "nchw")), baked=bool(d.get("baked_preprocessing")))


@dataclass
class ArtifactEntry:
    """One exported file as the manifest lists it."""

    file: str
    kind: str  # "model" (logits) or "backbone" (embeddings)
    format: str  # "onnx" or "tflite"
    precision: str  # "fp32", "fp16", "int8"
    input: dict[str, Any]
    output: dict[str, Any]
    size_bytes: int = 0
    sha256: str = ""
    notes: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["quantization"]:
            del d["quantization"]
        if not d["notes"]:
            del d["notes"]
        return d


def package_versions(names: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (absent packages are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def metadata_props(facts: Mapping[str, Any]) -> dict[str, str]:
    """Facts as ONNX ``metadata_props``: ``fedge.<key>`` -> JSON text."""
    return {f"{META_PREFIX}{k}": json.dumps(v, sort_keys=True) for k, v in facts.items()}


def facts_from_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`metadata_props`; other keys are ignored."""
    out: dict[str, Any] = {}
    for key, text in props.items():
        if key.startswith(META_PREFIX):
            try:
                out[key[len(META_PREFIX) :]] = json.loads(text)
            except json.JSONDecodeError:
                out[key[len(META_PREFIX) :]] = text
    return out


def sidecar_path(artifact: Path) -> Path:
    """``backbone.tflite`` -> ``backbone.json``."""
    return artifact.with_suffix(".json")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"cannot read '{path}': {e}") from e
    if not isinstance(data, dict):
        raise ArtifactError(f"'{path}' does not hold a JSON object.")
    return data


def onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read through ONNX Runtime."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for bad files
        raise ArtifactError(f"ONNX Runtime cannot load '{path}': {e}") from e
    return dict(session.get_modelmeta().custom_metadata_map)


def describe_artifact(path: str | Path) -> dict[str, Any]:
    """Everything known about an exported file: the facts of its export run
    with ``input``/``output``/``kind`` of this file, from (in this order)
    ``manifest.json`` beside it, its sidecar ``<stem>.json``, or its ONNX
    ``metadata_props``."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"'{path}' does not exist.")
    manifest = path.parent / MANIFEST
    if manifest.is_file():
        data = read_json(manifest)
        entry = data.get("artifacts", {}).get(path.name)
        if entry is not None:
            facts = {k: v for k, v in data.items() if k != "artifacts"}
            return {**facts, **entry}
    sidecar = sidecar_path(path)
    if sidecar.is_file() and sidecar != path:
        return read_json(sidecar)
    if path.suffix == ".onnx":
        facts = facts_from_metadata(onnx_metadata(path))
        if facts:
            return facts
    raise ArtifactError(
        f"no description of '{path}': expected {MANIFEST} (listing '{path.name}') or "
        f"{sidecar.name} beside it, or fedge metadata in the ONNX file. Export it with "
        "`fedge export RUN_DIR`, and keep the files of RUN_DIR/export/ together."
    )
