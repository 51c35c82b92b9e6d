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

from fedge.config import FedgeConfig
from fedge.data.federated import ClientData, Subset, deployed_client, simulated_client
from fedge.device import resolve_device
from fedge.embeddings.cache import embed_subset
from fedge.embeddings.extract import compute_embeddings
from fedge.errors import FedgeError
from fedge.models.backbones import Backbone
from fedge.models.model import LoadedBackbone, load_backbone_for

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
DATA_PATH = "data-path"


class ClassMismatch(FedgeError, ValueError):
    """The client's classes cannot be mapped onto the server's."""


@dataclass
class Embedded:
    """Usable embeddings of a subset (unreadable images dropped) and their labels."""

    x: np.ndarray
    y: np.ndarray
    skipped: int


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
        ok = ~np.isnan(z).any(axis=1)
        return Embedded(z[ok], subset.labels[ok], int((~ok).sum()))

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
        local = self.data.classes
        if list(server_classes) == list(local):
            return np.arange(len(local))
        unknown = sorted(set(local) - set(server_classes))
        if unknown:
            raise ClassMismatch(
                f"this client's data has classes {unknown} that the server's model "
                f"does not know (server classes: {list(server_classes)}). Rename or "
                "remove those class folders, or add them to the server's classes."
            )
        position = {name: i for i, name in enumerate(server_classes)}
        return np.asarray([position[name] for name in local], dtype=np.int64)


def _client_data(cfg: FedgeConfig, node_config: Mapping[str, object]) -> tuple[int, ClientData]:
    if PARTITION_ID in node_config:
        pid = int(node_config[PARTITION_ID])  # type: ignore[arg-type]
        n = int(node_config[NUM_PARTITIONS])  # type: ignore[arg-type]
        return pid, simulated_client(cfg, pid, n)
    data_path = str(node_config.get(DATA_PATH, "") or cfg.data_path)
    if not data_path:
        raise ValueError(
            "this SuperNode has no data: start it with --node-config "
            "\"data-path='/path/to/images'\" (or set data-path in the run config)."
        )
    return 0, deployed_client(cfg, data_path)


@functools.lru_cache(maxsize=64)
def _open(cfg: FedgeConfig, node_items: tuple[tuple[str, object], ...]) -> ClientSession:
    client_id, data = _client_data(cfg, dict(node_items))
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
