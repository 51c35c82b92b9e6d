"""Embedding cache: per process in memory, and on disk keyed by backbone
fingerprint and data, shared read-only by every process on the machine.

In memory, a per-process LRU (256 MiB at most) serves the ``memory`` cache
mode. On disk, embeddings live in shards ``<cache>/embeddings/<fingerprint>/<data>/
shard-<hash>/{indices,embeddings}.npy``; a lookup gathers the rows it needs
from any shards that hold them (memory-mapped, so concurrent readers share
pages) and only missing rows are computed. Shards are written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

_MEMORY_LIMIT_BYTES = 256 * 2**20
_memory: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
_memory_bytes = 0


def _indices_key(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:24]


def _remember(key: tuple[str, str, str], value: np.ndarray) -> None:
    """Keep ``value``, dropping the least recently used entries past the limit."""
    global _memory_bytes
    old = _memory.pop(key, None)
    _memory_bytes += value.nbytes - (old.nbytes if old is not None else 0)
    _memory[key] = value
    while _memory_bytes > _MEMORY_LIMIT_BYTES and len(_memory) > 1:
        _, dropped = _memory.popitem(last=False)
        _memory_bytes -= dropped.nbytes


def memory_cache_bytes() -> int:
    return _memory_bytes


def clear_memory_cache() -> None:
    global _memory_bytes
    _memory.clear()
    _memory_bytes = 0


@functools.lru_cache(maxsize=256)
def _open_shard(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    """A shard's indices and embeddings, memory-mapped once per process
    (shards never change once written: they appear by an atomic rename)."""
    return (
        np.load(shard / "indices.npy", mmap_mode="r"),
        np.load(shard / "embeddings.npy", mmap_mode="r"),
    )


class EmbeddingStore:
    """Embeddings of one data source under one backbone fingerprint."""

    def __init__(self, cache_dir: Path | None, fingerprint: str, data_signature: str) -> None:
        self.fingerprint = fingerprint
        self.data_signature = data_signature
        self.root = (
            cache_dir / "embeddings" / fingerprint[:16] / data_signature[:16]
            if cache_dir is not None
            else None
        )

    def _memory_key(self, indices: np.ndarray) -> tuple[str, str, str]:
        return (self.fingerprint, self.data_signature, _indices_key(indices))

    def _shards(self) -> list[Path]:
        if self.root is None or not self.root.is_dir():
            return []
        shards = [p for p in self.root.iterdir() if p.name.startswith("shard-")]
        return sorted(shards, key=lambda p: -(p / "indices.npy").stat().st_size)

    def lookup(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows found for ``indices`` and a mask of which were found."""
        cached = _memory.get(self._memory_key(indices))
        if cached is not None:
            return cached, np.ones(len(indices), dtype=bool)
        rows: np.ndarray | None = None
        found = np.zeros(len(indices), dtype=bool)
        for shard in self._shards():
            if found.all():
                break
            held, emb = _open_shard(shard)
            want = ~found
            pos = np.searchsorted(held, indices[want])
            pos_ok = pos < len(held)
            hit = np.zeros_like(pos_ok)
            hit[pos_ok] = held[pos[pos_ok]] == indices[want][pos_ok]
            if not hit.any():
                continue
            if rows is None:
                rows = np.full((len(indices), emb.shape[1]), np.nan, dtype=np.float32)
            target = np.flatnonzero(want)[hit]
            rows[target] = emb[pos[hit]]
            found[target] = True
        if rows is None:
            return np.empty((len(indices), 0), dtype=np.float32), found
        return rows, found

    def save(self, indices: np.ndarray, embeddings: np.ndarray) -> None:
        """Keep in memory, and write a shard when a cache dir is set."""
        if self.root is None or len(indices) == 0:
            return
        order = np.argsort(indices, kind="stable")
        idx, emb = indices[order], embeddings[order]
        target = self.root / f"shard-{_indices_key(idx)}"
        if target.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            np.save(tmp / "indices.npy", idx.astype(np.int64))
            np.save(tmp / "embeddings.npy", emb.astype(np.float32))
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remember(self, indices: np.ndarray, embeddings: np.ndarray) -> None:
        """Keep rows in this process's memory LRU, when there is no disk store
        to read them back from (disk shards are memory-mapped and shared by
        every process instead, so a simulation with thousands of clients does
        not copy each client's rows into every worker)."""
        if self.root is None:
            _remember(self._memory_key(indices), embeddings)
