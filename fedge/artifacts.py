"""A backbone artifact (``backbone.onnx`` / ``backbone.tflite``) as edge
clients receive it: the file's identity and what running it needs.

The contract of the file: input float32 NCHW ``[N, 3, S, S]``, preprocessed
(resized, scaled to [0, 1], normalized); output float32 ``[N, embedding_dim]``.
TFLite files have a fixed batch of 1 that the runtime may resize.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge.models.preprocessing import Preprocessing

FORMATS = ("tflite", "onnx")
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ArtifactInfo:
    """What identifies an artifact file and how to feed it."""

    format: str
    sha256: str
    size_bytes: int
    fingerprint: str
    preprocessing: Preprocessing
    embedding_dim: int
    layout: str = "nchw"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint,
            "preprocessing": self.preprocessing.to_dict(),
            "embedding_dim": self.embedding_dim,
            "layout": self.layout,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactInfo:
        fmt = str(d["format"])
        if fmt not in FORMATS:
            raise ValueError(f"unknown artifact format '{fmt}'; known: {', '.join(FORMATS)}.")
        return cls(
            format=fmt,
            sha256=str(d["sha256"]),
            size_bytes=int(d["size_bytes"]),
            fingerprint=str(d["fingerprint"]),
            preprocessing=Preprocessing.from_dict(d["preprocessing"]),
            embedding_dim=int(d["embedding_dim"]),
            layout=str(d.get("layout", "nchw")),
        )

    @classmethod
    def from_json(cls, text: str) -> ArtifactInfo:
        return cls.from_dict(json.loads(text))
