"""What local training takes and gives, free of any ML framework.

Shared by the PyTorch trainer (``client/trainer.py``) and the numpy trainer of
edge clients (``client/numpy_trainer.py``): the settings, the results, and the
seeded batch order that makes both runtimes see the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fedge.config import FedgeConfig


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    proximal_mu: float
    seed: int

    @classmethod
    def from_config(cls, cfg: FedgeConfig, proximal_mu: float = 0.0) -> TrainSettings:
        return cls(
            epochs=cfg.local_epochs,
            batch_size=cfg.batch_size,
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            proximal_mu=proximal_mu,
            seed=cfg.seed,
        )


@dataclass(frozen=True)
class TrainResult:
    loss: float
    accuracy: float
    num_examples: int
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    loss: float
    confusion: np.ndarray
    num_examples: int

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))


def batch_order(
    n: int, batch_size: int, epochs: int, seed: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """Index batches for all epochs: a fresh seeded permutation per epoch."""
    rng = np.random.default_rng(list(seed))
    for _ in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch_size):
            yield perm[i : i + batch_size]
