"""Preprocessed image batches for an embedding pass, free of any ML framework,
so the PyTorch backbone and the edge runtimes read images the same way."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fedge.data.images import ImageSource, UnreadableImage
from fedge.models.preprocessing import Preprocessing


def load_batch(
    source: ImageSource, indices: np.ndarray, preprocessing: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images (N, 3, S, S) and a mask of those that could be read."""
    size = preprocessing.image_size
    out = np.zeros((len(indices), 3, size, size), dtype=np.float32)
    ok = np.ones(len(indices), dtype=bool)
    for row, i in enumerate(indices.tolist()):
        try:
            out[row] = preprocessing(source.load(i))
        except UnreadableImage:
            ok[row] = False
    return out, ok


def prefetched_batches(
    source: ImageSource, indices: np.ndarray, preprocessing: Preprocessing, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode the next batch in a thread while the current one runs the backbone."""
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load_batch, source, chunks[0], preprocessing) if chunks else None
        for k in range(len(chunks)):
            assert pending is not None
            batch = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(load_batch, source, chunks[k + 1], preprocessing)
            yield batch
