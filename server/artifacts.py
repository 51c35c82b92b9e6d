"""The run's backbone as files for edge clients (``backbone.tflite``,
``backbone.onnx``): exported on an edge client's first request, kept in the
cache dir by fingerprint (``<cache>/backbones/<fingerprint16>/``) so later
runs reuse them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from fedge.artifacts import SUFFIX, ArtifactInfo, file_sha256
from fedge.errors import FedgeError
from fedge.models.model import LoadedBackbone

Exporter = Callable[[LoadedBackbone, Path, Sequence[str]], dict[str, Path]]


class ExportUnavailable(FedgeError, ImportError):
    """Edge clients need an artifact that this server cannot export."""


def export_with_fedge(
    loaded: LoadedBackbone, out_dir: Path, formats: Sequence[str]
) -> dict[str, Path]:
    """fedge's own exporter (``export/backbone.py``, the `export` extra)."""
    try:
        from export.backbone import export_backbone
    except ImportError as e:
        raise ExportUnavailable(
            f"edge clients asked for the backbone as {', '.join(formats)}, and exporting "
            f"it needs fedge's exporter: pip install -e '.[export]' ({e})."
        ) from e
    return export_backbone(loaded, out_dir, formats=formats)


class BackboneArtifacts:
    def __init__(
        self, loaded: LoadedBackbone, cache: Path, exporter: Exporter = export_with_fedge
    ) -> None:
        self.loaded = loaded
        self.directory = cache / "backbones" / loaded.fingerprint[:16]
        self.exporter = exporter
        self._ready: dict[str, tuple[Path, ArtifactInfo]] = {}

    def _paths(self, fmt: str) -> tuple[Path, Path]:
        path = self.directory / f"backbone{SUFFIX[fmt]}"
        return path, path.with_name(path.name + ".json")

    def _describe(self, fmt: str, path: Path) -> ArtifactInfo:
        return ArtifactInfo(
            format=fmt,
            sha256=file_sha256(path),
            size_bytes=path.stat().st_size,
            fingerprint=self.loaded.fingerprint,
            preprocessing=self.loaded.preprocessing,
            embedding_dim=self.loaded.module.embedding_dim,
        )

    def adopt(self, fmt: str, source: Path) -> ArtifactInfo:
        """Take ``source`` (a file of this backbone in ``fmt``) as the artifact."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path, meta = self._paths(fmt)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(path)
        info = self._describe(fmt, path)
        meta.write_text(info.to_json(), encoding="utf-8")
        self._ready[fmt] = (path, info)
        return info

    def _cached(self, fmt: str) -> tuple[Path, ArtifactInfo] | None:
        path, meta = self._paths(fmt)
        if not (path.is_file() and meta.is_file()):
            return None
        info = ArtifactInfo.from_json(meta.read_text(encoding="utf-8"))
        if info.fingerprint != self.loaded.fingerprint or file_sha256(path) != info.sha256:
            return None
        return path, info

    def get(self, fmt: str) -> tuple[Path, ArtifactInfo]:
        """The artifact in ``fmt``: cached, or exported now."""
        if fmt not in self._ready:
            found = self._cached(fmt)
            if found is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
                    exported = self.exporter(self.loaded, Path(tmp), (fmt,))
                    self.adopt(fmt, exported[fmt])
            else:
                self._ready[fmt] = found
        return self._ready[fmt]

    def prepared(self) -> dict[str, ArtifactInfo]:
        """The artifacts fetched or exported so far, by format."""
        return {fmt: info for fmt, (_, info) in self._ready.items()}

    def read(self, fmt: str) -> tuple[bytes, ArtifactInfo]:
        path, info = self.get(fmt)
        return path.read_bytes(), info
