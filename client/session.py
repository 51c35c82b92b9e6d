"""A client's local state across rounds: its backbone, data and embeddings.

Kept per process, so a simulation worker that serves the same client again,
or a SuperNode across rounds, embeds its images only once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from client.local_data import (
    DATA_PATH,
    NUM_PARTITIONS,
    PARTITION_ID,
    ClassMismatch,
    Embedded,
    EmptyPartition,
    client_data,
    label_map,
    usable_embeddings,
)
from fedge.config import FedgeConfig
from fedge.data.federated import ClientData, Subset
from fedge.device import resolve_device
from fedge.embeddings.cache import embed_subset
from fedge.embeddings.extract import compute_embeddings
from fedge.models.backbones import Backbone
from fedge.models.model import FedgeModel, LoadedBackbone, build_model, load_backbone_for

__all__ = [
    "DATA_PATH",
    "NUM_PARTITIONS",
    "PARTITION_ID",
    "ClassMismatch",
    "ClientSession",
    "Embedded",
    "EmptyPartition",
    "open_session",
]


@dataclass
class ClientSession:
    cfg: FedgeConfig
    client_id: int
    device: torch.device
    loaded: LoadedBackbone
    data: ClientData
    embed_seconds: float = 0.0
    _train: Embedded | None = None
    _test: Embedded | None = None

    def model(self, num_classes: int) -> FedgeModel:
        """A model for ``num_classes`` classes, into which each message loads the
        server's trainable parameters. With a frozen backbone, one model per
        process serves every client (a process runs one ClientApp call at a
        time); unfrozen blocks, and local DP (Opacus hooks the head it trains),
        make a fresh copy per message."""
        if self.cfg.unfreeze_last or self.cfg.dp == "local":
            return build_model(self.cfg, num_classes, self.loaded)
        return _shared_model(self.cfg, num_classes)

    @property
    def uses_embeddings(self) -> bool:
        return self.cfg.embedding_cache != "off" and self.cfg.unfreeze_last == 0

    def _embed(self, subset: Subset, live: Backbone | None = None) -> Embedded:
        start = time.perf_counter()
        if live is None:
            z = embed_subset(self.cfg, self.loaded, subset, self.device)
        else:  # a backbone that trains: nothing to cache
            z = compute_embeddings(
                live,
                self.loaded.preprocessing,
                subset.source,
                subset.indices,
                device=self.device,
                batch_size=self.cfg.embed_batch_size,
            )
        self.embed_seconds += time.perf_counter() - start
        return usable_embeddings(z, subset.labels)

    def require_training_data(self) -> None:
        if len(self.data.train) == 0:
            raise EmptyPartition(
                f"client {self.client_id} has no training samples. In a simulation, a "
                "small dirichlet-alpha with many clients leaves some partitions empty; "
                "raise dirichlet-alpha or lower num-clients to avoid it."
            )

    def train_embeddings(self) -> Embedded:
        if self._train is None:
            self._train = self._embed(self.data.train)
        return self._train

    def test_embeddings(self, backbone: Backbone) -> Embedded:
        """Local test embeddings; through ``backbone`` itself when it trains."""
        if not self.uses_embeddings:
            return self._embed(self.data.test, live=backbone)
        if self._test is None:
            self._test = self._embed(self.data.test)
        return self._test

    def label_map(self, server_classes: list[str]) -> np.ndarray:
        """Map local label ids to the server's class order, by class name."""
        return label_map(self.data.classes, server_classes)


@functools.lru_cache(maxsize=4)
def _shared_model(cfg: FedgeConfig, num_classes: int) -> FedgeModel:
    return build_model(cfg, num_classes, load_backbone_for(cfg))


@functools.lru_cache(maxsize=64)
def _open(cfg: FedgeConfig, node_items: tuple[tuple[str, object], ...]) -> ClientSession:
    client_id, data = client_data(cfg, dict(node_items))
    torch.set_num_threads(max(1, int(cfg.num_cpus)))
    return ClientSession(
        cfg=cfg,
        client_id=client_id,
        device=resolve_device(cfg.device),
        loaded=load_backbone_for(cfg),
        data=data,
    )


def open_session(cfg: FedgeConfig, node_config: Mapping[str, object]) -> ClientSession:
    """The (cached) session of the client a node config describes."""
    return _open(cfg, tuple(sorted(node_config.items())))
