"""A client's own data, and how its labels map onto the server's classes.

Framework-free, so the PyTorch client and the edge client read a node's data
identically: a simulated partition, or the node config's ``data-path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedge.config import FedgeConfig
from fedge.data.federated import ClientData, deployed_client, simulated_client
from fedge.errors import FedgeError

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
DATA_PATH = "data-path"


class ClassMismatch(FedgeError, ValueError):
    """The client's classes cannot be mapped onto the server's."""


class EmptyPartition(FedgeError, ValueError):
    """A client without training samples (it cannot train or send statistics)."""


@dataclass
class Embedded:
    """Usable embeddings of a subset (unreadable images dropped) and their labels."""

    x: np.ndarray
    y: np.ndarray
    skipped: int


def usable_embeddings(z: np.ndarray, labels: np.ndarray) -> Embedded:
    """Drop the NaN rows that mark unreadable images, counting them."""
    ok = ~np.isnan(z).any(axis=1)
    return Embedded(z[ok], labels[ok], int((~ok).sum()))


def client_data(cfg: FedgeConfig, node_config: Mapping[str, object]) -> tuple[int, ClientData]:
    """(client id, data) of the node a node config describes."""
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


def label_map(local_classes: list[str], server_classes: list[str]) -> np.ndarray:
    """Map local label ids to the server's class order, by class name."""
    if list(server_classes) == list(local_classes):
        return np.arange(len(local_classes))
    unknown = sorted(set(local_classes) - set(server_classes))
    if unknown:
        raise ClassMismatch(
            f"this client's data has classes {unknown} that the server's model "
            f"does not know (server classes: {list(server_classes)}). Rename or "
            "remove those class folders, or add them to the server's classes."
        )
    position = {name: i for i, name in enumerate(server_classes)}
    return np.asarray([position[name] for name in local_classes], dtype=np.int64)
