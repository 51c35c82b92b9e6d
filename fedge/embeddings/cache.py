"""Get embeddings for some samples: from memory, from disk, or computed once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fedge.config import FedgeConfig
from fedge.data.federated import Subset
from fedge.embeddings.extract import compute_embeddings
from fedge.embeddings.store import EmbeddingStore
from fedge.models.model import LoadedBackbone
from fedge.paths import cache_dir


def store_for(cfg: FedgeConfig, loaded: LoadedBackbone, subset: Subset) -> EmbeddingStore:
    disk = cache_dir(cfg) if cfg.embedding_cache == "disk" else None
    return EmbeddingStore(disk, loaded.fingerprint, subset.source.signature)


def embed_subset(
    cfg: FedgeConfig,
    loaded: LoadedBackbone,
    subset: Subset,
    device: torch.device,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings (N, D) of ``subset``; NaN rows mark unreadable images."""
    store = store_for(cfg, loaded, subset)
    rows, found = store.lookup(subset.indices)
    if not found.all():
        missing = subset.indices[~found]
        fresh = compute_embeddings(
            loaded.module,
            loaded.preprocessing,
            subset.source,
            missing,
            device=device,
            batch_size=cfg.embed_batch_size,
            on_progress=on_progress,
        )
        if rows.shape[1] == 0:
            rows = np.empty((len(subset), fresh.shape[1]), dtype=np.float32)
        rows[~found] = fresh
        store.save(missing, fresh)
    elif on_progress is not None:
        on_progress(len(subset))
    store.remember(subset.indices, rows)
    return rows


def missing_count(cfg: FedgeConfig, loaded: LoadedBackbone, subset: Subset) -> int:
    """How many samples of ``subset`` would need the backbone."""
    _, found = store_for(cfg, loaded, subset).lookup(subset.indices)
    return int((~found).sum())
