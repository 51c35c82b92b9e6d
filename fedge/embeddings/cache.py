"""Get embeddings for some samples: from memory, from disk, or computed once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fedge.config import FedgeConfig
from fedge.data.federated import Subset
from fedge.embeddings.extract import compute_embeddings
from fedge.embeddings.lookup import lookup_or_compute
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

    def compute(missing: np.ndarray) -> np.ndarray:
        return compute_embeddings(
            loaded.module,
            loaded.preprocessing,
            subset.source,
            missing,
            device=device,
            batch_size=cfg.embed_batch_size,
            on_progress=on_progress,
        )

    return lookup_or_compute(store_for(cfg, loaded, subset), subset.indices, compute, on_progress)


def missing_count(cfg: FedgeConfig, loaded: LoadedBackbone, subset: Subset) -> int:
    """How many samples of ``subset`` would need the backbone."""
    _, found = store_for(cfg, loaded, subset).lookup(subset.indices)
    return int((~found).sum())
