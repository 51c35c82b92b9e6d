"""Centralized evaluation of the global head on the server's held-out split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from client.trainer import evaluate_head
from fedge.config import FedgeConfig
from fedge.data.federated import Subset
from fedge.embeddings.cache import embed_subset
from fedge.embeddings.extract import compute_embeddings
from fedge.metrics import summarize_confusion
from fedge.models.model import FedgeModel, LoadedBackbone, load_trainable_state


@dataclass
class CentralEvaluator:
    """Holds the held-out embeddings (computed once) and scores heads on them."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    device: torch.device
    test: Subset
    batch_size: int

    @classmethod
    def build(
        cls,
        cfg: FedgeConfig,
        loaded: LoadedBackbone,
        test: Subset,
        num_classes: int,
        device: torch.device,
        on_progress: Callable[[int], None] | None = None,
    ) -> CentralEvaluator:
        z = embed_subset(cfg, loaded, test, device, on_progress=on_progress)
        ok = ~np.isnan(z).any(axis=1)
        return cls(z[ok], test.labels[ok], num_classes, device, test, cfg.embed_batch_size)

    def evaluate(self, model: FedgeModel, arrays: dict[str, np.ndarray]) -> dict[str, object]:
        """Metrics of ``model`` with the trainable ``arrays`` loaded."""
        load_trainable_state(model, arrays)
        x, y = self.x, self.y
        if any(p.requires_grad for p in model.backbone.parameters()):  # unfrozen blocks
            z = compute_embeddings(
                model.backbone,
                model.preprocessing,
                self.test.source,
                self.test.indices,
                device=self.device,
                batch_size=self.batch_size,
            )
            ok = ~np.isnan(z).any(axis=1)
            x, y = z[ok], self.test.labels[ok]
        result = evaluate_head(model.head, x, y, self.num_classes, self.device)
        summary = summarize_confusion(result.confusion)
        return {
            "loss": result.loss,
            **summary,
            "confusion": result.confusion.tolist(),
            "num_examples": result.num_examples,
        }
