"""An edge client's local state across rounds: its data, its backbone
artifact in an inference runtime, and the embeddings it computed with it.

Embeddings are cached like the PyTorch client's (in memory, and on disk with
``embedding-cache = disk``), keyed by the artifact's sha256: rows computed by
one runtime are never mixed with another backbone's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from client.artifact_store import StoredArtifact
from client.local_data import Embedded, client_data, usable_embeddings
from client.runtimes import Embedder, open_embedder
from fedge.config import FedgeConfig
from fedge.data.federated import ClientData, Subset
from fedge.embeddings.batches import prefetched_batches
from fedge.embeddings.lookup import lookup_or_compute
from fedge.embeddings.store import EmbeddingStore
from fedge.paths import cache_dir


def embed_with(
    embedder: Embedder,
    artifact: StoredArtifact,
    subset: Subset,
    indices: np.ndarray,
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings (N, D) of ``subset.source`` at ``indices``; NaN rows for
    images that could not be read."""
    info = artifact.info
    out = np.full((len(indices), info.embedding_dim), np.nan, dtype=np.float32)
    row = 0
    for images, ok in prefetched_batches(subset.source, indices, info.preprocessing, batch_size):
        if ok.any():
            out[row : row + len(ok)][ok] = embedder(images[ok])
        row += len(ok)
        if on_progress is not None:
            on_progress(len(ok))
    return out


@dataclass
class EdgeSession:
    cfg: FedgeConfig
    client_id: int
    data: ClientData
    runtime: str
    artifact: StoredArtifact
    embed_seconds: float = 0.0
    _embedder: Embedder | None = None
    _embedded: dict[str, Embedded] = field(default_factory=dict)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            threads = max(1, int(self.cfg.num_cpus))
            self._embedder = open_embedder(self.artifact.path, self.runtime, threads)
        return self._embedder

    def _store(self, subset: Subset) -> EmbeddingStore:
        disk = cache_dir(self.cfg) if self.cfg.embedding_cache == "disk" else None
        return EmbeddingStore(disk, self.artifact.info.sha256, subset.source.signature)

    def _embed(self, name: str, subset: Subset) -> Embedded:
        if name not in self._embedded:
            start = time.perf_counter()

            def compute(missing: np.ndarray) -> np.ndarray:
                return embed_with(
                    self.embedder, self.artifact, subset, missing, self.cfg.embed_batch_size
                )

            z = lookup_or_compute(self._store(subset), subset.indices, compute)
            self.embed_seconds += time.perf_counter() - start
            self._embedded[name] = usable_embeddings(z, subset.labels)
        return self._embedded[name]

    def train_embeddings(self) -> Embedded:
        return self._embed("train", self.data.train)

    def test_embeddings(self) -> Embedded:
        return self._embed("test", self.data.test)


@functools.lru_cache(maxsize=64)
def _open(
    cfg: FedgeConfig,
    node_items: tuple[tuple[str, object], ...],
    runtime: str,
    artifact: StoredArtifact,
) -> EdgeSession:
    client_id, data = client_data(cfg, dict(node_items))
    return EdgeSession(cfg, client_id, data, runtime, artifact)


def open_edge_session(
    cfg: FedgeConfig, node_config: Mapping[str, object], runtime: str, artifact: StoredArtifact
) -> EdgeSession:
    """The (cached) session of the edge client a node config describes."""
    return _open(cfg, tuple(sorted(node_config.items())), runtime, artifact)
