"""The embedding pass: images through the frozen backbone, once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fedge.data.images import ImageSource, UnreadableImage
from fedge.models.backbones import Backbone
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


def _batches(
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


@torch.inference_mode()
def compute_embeddings(
    backbone: Backbone,
    preprocessing: Preprocessing,
    source: ImageSource,
    indices: np.ndarray,
    *,
    device: torch.device,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings (N, D) float32; rows of unreadable images are NaN."""
    module = backbone.to(device).eval()
    out = np.full((len(indices), module.embedding_dim), np.nan, dtype=np.float32)
    use_half = device.type == "cuda"
    row = 0
    for images, ok in _batches(source, indices, preprocessing, batch_size):
        n = len(ok)
        if ok.any():
            x = torch.from_numpy(images[ok]).to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_half):
                z = module(x)
            out[row : row + n][ok] = z.float().cpu().numpy()
        row += n
        if on_progress is not None:
            on_progress(n)
    backbone.to("cpu")
    return out
