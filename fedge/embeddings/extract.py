"""The embedding pass: images through the frozen backbone, once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fedge.data.images import ImageSource
from fedge.embeddings.batches import load_batch, prefetched_batches
from fedge.models.backbones import Backbone
from fedge.models.preprocessing import Preprocessing

__all__ = ["compute_embeddings", "load_batch"]


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
    for images, ok in prefetched_batches(source, indices, preprocessing, batch_size):
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
