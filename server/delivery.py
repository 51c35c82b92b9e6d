"""Backbone delivery on the server: before a node's first round, ask it what
it needs (``fedge/delivery.py``), and send an edge client the backbone
artifact it lacks, once. Nodes that answered are not asked again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from logging import WARNING
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore import log

from fedge import delivery
from fedge.errors import FedgeError
from server.artifacts import BackboneArtifacts


@dataclass
class NodeBackbone:
    """What the server learned about a node's backbone."""

    runtime: str
    format: str
    delivered_bytes: int = 0
    had_it: bool = False


def _send(grid: Grid, contents: dict[int, Any], timeout: float) -> dict[int, Message]:
    messages = [
        Message(content, dst_node_id=node, message_type=delivery.MESSAGE_TYPE)
        for node, content in contents.items()
    ]
    replies = grid.send_and_receive(messages, timeout=timeout) if messages else []
    return {r.metadata.src_node_id: r for r in replies}


class BackboneDelivery:
    """The round loop's node preparer (``server/rounds.py``)."""

    def __init__(self, artifacts: BackboneArtifacts, fingerprint: str) -> None:
        self.artifacts = artifacts
        self.fingerprint = fingerprint
        self.nodes: dict[int, NodeBackbone] = {}

    def prepare(self, grid: Grid, node_ids: Sequence[int], timeout: float) -> int:
        """Make sure ``node_ids`` hold what they need; return the bytes sent."""
        todo = [n for n in dict.fromkeys(node_ids) if n not in self.nodes]
        if not todo:
            return 0
        request = {n: delivery.status_request(self.fingerprint) for n in todo}
        needs: dict[int, delivery.NodeStatus] = {}
        for node, reply in _send(grid, request, timeout).items():
            if reply.has_error():
                # A ClientApp without backbone queries: it cannot take an artifact.
                log(
                    WARNING,
                    "node %d did not answer the backbone query: %s",
                    node,
                    reply.error.reason,
                )
                self.nodes[node] = NodeBackbone(runtime="unknown", format="")
                continue
            status = delivery.NodeStatus.from_content(reply.content)
            needs[node] = status
            if not status.format:
                self.nodes[node] = NodeBackbone(status.runtime, "")
        return self._deliver(grid, {n: s for n, s in needs.items() if s.format}, timeout)

    def _deliver(self, grid: Grid, needs: dict[int, delivery.NodeStatus], timeout: float) -> int:
        contents, sizes = {}, {}
        for node, status in needs.items():
            try:
                data, info = self.artifacts.read(status.format)
            except FedgeError as e:
                log(WARNING, "node %d needs a %s backbone: %s", node, status.format, e)
                continue
            if status.sha256 == info.sha256:
                self.nodes[node] = NodeBackbone(status.runtime, status.format, had_it=True)
            else:
                contents[node] = delivery.delivery_request(info, data)
                sizes[node] = len(data)
        for node, reply in _send(grid, contents, timeout).items():
            if reply.has_error():
                log(WARNING, "node %d rejected the backbone: %s", node, reply.error.reason)
                continue
            status = needs[node]
            self.nodes[node] = NodeBackbone(status.runtime, status.format, sizes[node])
        return sum(sizes.values())

    def summary(self) -> dict[str, Any]:
        """For summary.json: who runs what, and what the deliveries cost."""
        delivered = [n.delivered_bytes for n in self.nodes.values() if n.delivered_bytes]
        runtimes: dict[str, int] = {}
        for n in self.nodes.values():
            runtimes[n.runtime] = runtimes.get(n.runtime, 0) + 1
        artifacts = {
            fmt: {"sha256": info.sha256, "size_bytes": info.size_bytes}
            for fmt, info in self.artifacts.prepared().items()
        }
        return {
            "node_runtimes": runtimes,
            "edge_clients": sum(1 for n in self.nodes.values() if n.format),
            "deliveries": len(delivered),
            "already_held": sum(1 for n in self.nodes.values() if n.had_it),
            "bytes_down": sum(delivered),
            "first_delivery_bytes_per_client": max(delivered) if delivered else 0,
            "artifacts": artifacts,
        }
