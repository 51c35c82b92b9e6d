"""The images export verifies and calibrates on: the server's held-out split
only (clients' data never leaves them, so it never calibrates a model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedge.config import FedgeConfig
from fedge.data.federated import dataset_splits, server_test
from fedge.data.images import ImageSource, UnreadableImage
from fedge.models.preprocessing import Preprocessing


@dataclass(frozen=True)
class HeldOut:
    """uint8 RGB images ``[N, S, S, 3]`` resized by the model's preprocessing."""

    images: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray
    calibration_disjoint: bool  # calibration images are not among the evaluated ones

    def describe(self) -> dict[str, object]:
        return {
            "evaluation_samples": len(self.images),
            "calibration_samples": len(self.calibration),
            "calibration_source": "server held-out split"
            + (", disjoint from the evaluation samples" if self.calibration_disjoint else ""),
        }


def _load(
    source: ImageSource, indices: np.ndarray, pre: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    images, kept = [], []
    for i in indices.tolist():
        try:
            images.append(pre.resize_rgb(source.load(i)))
        except UnreadableImage:
            continue
        kept.append(i)
    size = pre.image_size
    array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return array, np.asarray(kept, dtype=np.int64)


def held_out(
    cfg: FedgeConfig, pre: Preprocessing, max_eval: int = 1000, calibration: int = 300
) -> HeldOut:
    """Up to ``max_eval`` of the server's evaluation samples, and up to
    ``calibration`` other images of the held-out split (drawn from the
    evaluated ones only when the split has no others)."""
    _, test = server_test(cfg)
    eval_idx = test.indices[:max_eval] if max_eval else test.indices
    images, kept = _load(test.source, eval_idx, pre)
    labels = test.source.labels[kept]
    held = dataset_splits(cfg).test
    assert held is not None
    rest = np.setdiff1d(np.arange(len(held)), eval_idx)
    pool = rest if len(rest) else np.arange(len(held))
    order = np.random.default_rng(cfg.seed + 1).permutation(pool)[:calibration]
    calib, _ = _load(held, np.sort(order), pre)
    return HeldOut(images, labels, calib, calibration_disjoint=len(rest) > 0)
