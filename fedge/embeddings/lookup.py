"""Embeddings of some samples from a store, computing only the missing rows.

Framework-free: the PyTorch path (``fedge/embeddings/cache.py``) and the edge
clients pass their own ``compute`` function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedge.embeddings.store import EmbeddingStore

Compute = Callable[[np.ndarray], np.ndarray]


def lookup_or_compute(
    store: EmbeddingStore,
    indices: np.ndarray,
    compute: Compute,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Rows (N, D) for ``indices``: found in ``store`` or computed by
    ``compute(missing_indices)`` (which reports its own progress) and saved."""
    rows, found = store.lookup(indices)
    if not found.all():
        missing = indices[~found]
        fresh = compute(missing)
        if rows.shape[1] == 0:
            rows = np.empty((len(indices), fresh.shape[1]), dtype=np.float32)
        rows[~found] = fresh
        store.save(missing, fresh)
    elif on_progress is not None:
        on_progress(len(indices))
    store.remember(indices, rows)
    return rows
