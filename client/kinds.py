"""Which client a node runs: the PyTorch client or the edge client, and where
an edge client keeps its artifacts.

A SuperNode's node config ``runtime`` decides: ``torch``; ``edge`` (the run
config's ``edge-runtime``); or an edge runtime by name. Without it (or
``auto``), a
simulated partition is an edge client when ``edge-fraction`` picks it, and a
deployed node runs PyTorch when torch is installed, else the edge client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from client.local_data import NUM_PARTITIONS, PARTITION_ID
from client.runtimes import PREFERENCE
from fedge.config import FedgeConfig
from fedge.errors import FedgeError
from fedge.extras import has_torch
from fedge.paths import cache_dir

RUNTIME = "runtime"
TORCH, EDGE = "torch", "edge"


class UnknownRuntime(FedgeError, ValueError):
    """A node config ``runtime`` fedge does not know."""


@dataclass(frozen=True)
class ClientKind:
    kind: str  # TORCH or EDGE
    edge_runtime: str = ""  # for EDGE: auto or a runtime name


def is_edge_partition(partition_id: int, edge_fraction: float) -> bool:
    """Spread ``edge_fraction`` of the partitions evenly over the ids:
    exactly ``floor(n * edge_fraction)`` of any first n are edge clients."""

    def count(n: int) -> int:
        return math.floor(round(n * edge_fraction, 9))

    return count(partition_id + 1) > count(partition_id)


def edge_partitions(num_partitions: int, edge_fraction: float) -> list[int]:
    return [p for p in range(num_partitions) if is_edge_partition(p, edge_fraction)]


def client_kind(cfg: FedgeConfig, node_config: Mapping[str, object]) -> ClientKind:
    requested = str(node_config.get(RUNTIME, "") or "auto")
    if requested == TORCH:
        return ClientKind(TORCH)
    if requested == EDGE:
        return ClientKind(EDGE, cfg.edge_runtime)
    if requested in PREFERENCE:
        return ClientKind(EDGE, requested)
    if requested != "auto":
        raise UnknownRuntime(
            f"node config runtime='{requested}' is unknown; allowed: auto, torch, edge, "
            f"{', '.join(PREFERENCE)}."
        )
    if PARTITION_ID in node_config:
        pid = int(node_config[PARTITION_ID])  # type: ignore[arg-type]
        edge = is_edge_partition(pid, cfg.edge_fraction)
        return ClientKind(EDGE, cfg.edge_runtime) if edge else ClientKind(TORCH)
    return ClientKind(TORCH) if has_torch() else ClientKind(EDGE, cfg.edge_runtime)


def artifact_root(cfg: FedgeConfig, node_config: Mapping[str, object]) -> Path:
    """Where this node keeps backbone artifacts: its cache dir's ``artifacts/``;
    a simulated node gets its own, as a separate device would."""
    base = cache_dir(cfg)
    if PARTITION_ID in node_config:
        n = node_config.get(NUM_PARTITIONS, "")
        base = base / "simulated-nodes" / f"{node_config[PARTITION_ID]}-of-{n}"
    return base / "artifacts"
