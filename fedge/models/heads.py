"""Trainable heads that sit on the frozen embedding."""

from __future__ import annotations

from torch import nn


def build_head(kind: str, embedding_dim: int, num_classes: int, hidden: int = 256) -> nn.Module:
    """``linear``: one ``nn.Linear``; ``mlp``: Linear-ReLU-Linear."""
    if kind == "linear":
        return nn.Linear(embedding_dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
    raise ValueError(f"unknown head '{kind}'; allowed: linear, mlp.")
