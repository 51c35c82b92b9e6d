"""Labeled image collections that load lazily, one image at a time.

Torch-free on purpose: edge clients read their data with the same code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from PIL import Image, UnidentifiedImageError


class UnreadableImage(RuntimeError):
    """An image file that PIL cannot decode (corrupt, truncated, not an image)."""


@dataclass
class FileImages:
    """Images on disk: one path and one label per sample."""

    paths: list[str]
    labels: np.ndarray
    skipped_files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Image.Image:
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                im.load()
                return im.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise UnreadableImage(f"cannot read image '{path}': {e}") from e

    def take(self, indices: np.ndarray) -> FileImages:
        return FileImages([self.paths[i] for i in indices.tolist()], self.labels[indices])

    @cached_property
    def signature(self) -> str:
        """Identity of the content, for cache keys: names, sizes, times, labels."""
        h = hashlib.sha256()
        for path, label in zip(self.paths, self.labels.tolist(), strict=True):
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}|{label}\n".encode())
        return h.hexdigest()


@dataclass
class ArrayImages:
    """Images held in an array: (N, H, W) greyscale or (N, H, W, C) uint8."""

    array: np.ndarray
    labels: np.ndarray
    skipped_files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.array)

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(self.array[i]))

    def take(self, indices: np.ndarray) -> ArrayImages:
        return ArrayImages(self.array[indices], self.labels[indices])

    @cached_property
    def signature(self) -> str:
        h = hashlib.sha256()
        h.update(str(self.array.shape).encode())
        h.update(np.ascontiguousarray(self.array).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()


ImageSource = FileImages | ArrayImages


@dataclass
class DatasetSplits:
    """A dataset as fedge sees it: a train split, an optional test split, labels."""

    name: str
    classes: list[str]
    train: ImageSource
    test: ImageSource | None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_holdout(self, fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
        """Hold out a seeded share of train as the test split when there is none."""
        if self.test is not None:
            return self
        order = np.random.default_rng(seed).permutation(len(self.train))
        n_test = max(1, int(round(len(order) * fraction)))
        test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        train = self.train.take(train_idx)
        train.skipped_files = self.train.skipped_files
        return DatasetSplits(self.name, self.classes, train, self.train.take(test_idx))

    @property
    def skipped_files(self) -> list[str]:
        test = self.test.skipped_files if self.test is not None else []
        return self.train.skipped_files + test
