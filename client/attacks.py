"""Simulated attackers, to measure how aggregation strategies hold up.

Simulation only: the first ``k = round(malicious-fraction x num-clients)``
partitions (rounding half up) attack, every round, so runs are reproducible
and the attackers are known. A deployed client (no partition id) never attacks.

- ``sign-flip``: send ``-attack-scale x`` the honest update.
- ``scale``: send ``attack-scale x`` the honest update.
- ``noise``: send Gaussian noise whose RMS is ``attack-scale x`` the honest update's.
- ``label-flip``: train honestly on poisoned labels ``K-1-y``.
"""

from __future__ import annotations

import math

import numpy as np

from fedge.config import FedgeConfig


def is_attacker(cfg: FedgeConfig, partition_id: int | None) -> bool:
    return partition_id is not None and cfg.attack != "none" and partition_id < cfg.num_attackers


def flip_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``label-flip``: class ``y`` becomes ``K-1-y``."""
    return (num_classes - 1 - labels).astype(labels.dtype)


def poison_update(
    new: dict[str, np.ndarray],
    received: dict[str, np.ndarray],
    attack: str,
    scale: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The parameters an attacker sends instead of its honest ``new`` ones."""
    if attack not in ("sign-flip", "scale", "noise"):
        return new
    delta = {k: new[k].astype(np.float64) - received[k] for k in new}
    if attack == "sign-flip":
        bad = {k: -scale * d for k, d in delta.items()}
    elif attack == "scale":
        bad = {k: scale * d for k, d in delta.items()}
    else:
        total = sum(d.size for d in delta.values())
        rms = math.sqrt(sum(float((d**2).sum()) for d in delta.values()) / max(1, total))
        bad = {k: rng.normal(0.0, scale * rms, d.shape) for k, d in delta.items()}
    return {k: (received[k] + bad[k]).astype(new[k].dtype) for k in new}
