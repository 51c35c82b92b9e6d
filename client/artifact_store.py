"""An edge client's local cache of backbone artifacts, by content.

``<root>/<sha256>.<tflite|onnx>`` with ``<sha256>.json`` (its
:class:`~fedge.artifacts.ArtifactInfo`) beside it. A file enters only after
its bytes hash to the sha256 the server announced; a file found on disk is
hashed again once per process before use.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fedge.artifacts import SUFFIX, ArtifactInfo, bytes_sha256, file_sha256
from fedge.errors import FedgeError


class ArtifactRejected(FedgeError, ValueError):
    """Received bytes that are not the artifact the server announced."""


@dataclass(frozen=True)
class StoredArtifact:
    path: Path
    info: ArtifactInfo


_verified: set[tuple[str, str]] = set()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, info: ArtifactInfo) -> tuple[Path, Path]:
        return self.root / f"{info.sha256}{SUFFIX[info.format]}", self.root / f"{info.sha256}.json"

    def find(self, fingerprint: str, fmt: str) -> StoredArtifact | None:
        """The newest intact artifact of backbone ``fingerprint`` in ``fmt``."""
        if not self.root.is_dir():
            return None
        metas = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for meta in metas:
            try:
                info = ArtifactInfo.from_json(meta.read_text(encoding="utf-8"))
            except (ValueError, KeyError):
                continue
            if info.fingerprint != fingerprint or info.format != fmt:
                continue
            path = self._paths(info)[0]
            if self._intact(path, info):
                return StoredArtifact(path, info)
        return None

    def _intact(self, path: Path, info: ArtifactInfo) -> bool:
        key = (str(path), info.sha256)
        if key in _verified:
            return True
        if not path.is_file() or path.stat().st_size != info.size_bytes:
            return False
        if file_sha256(path) != info.sha256:
            return False
        _verified.add(key)
        return True

    def put(self, data: bytes, info: ArtifactInfo) -> StoredArtifact:
        """Keep ``data`` after checking it is the artifact ``info`` announces."""
        actual = bytes_sha256(data)
        if actual != info.sha256 or len(data) != info.size_bytes:
            raise ArtifactRejected(
                f"received backbone artifact does not match its announcement: sha256 "
                f"{actual[:16]} and {len(data)} bytes, expected {info.sha256[:16]} and "
                f"{info.size_bytes} bytes. Nothing was stored; the server sends it again."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        path, meta = self._paths(info)
        _write_atomic(path, data)
        _write_atomic(meta, info.to_json().encode())
        _verified.add((str(path), info.sha256))
        return StoredArtifact(path, info)
