"""Waiting for SuperNodes, with a bound.

Flower's built-in strategies sample nodes with ``sample_nodes()``, which polls
``grid.get_node_ids()`` until ``min_available_nodes`` are connected, with no
time limit: one hospital that goes away for good would hang the next round.
:class:`BoundedGrid` wraps the real grid so that this wait lasts at most
``timeout`` seconds and then raises :class:`TooFewNodes`, which the round loop
turns into a skipped round with its reason on record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore import log
from flwr.supercore.run import Run


class TooFewNodes(Exception):
    """Fewer than the minimum number of nodes stayed connected for the whole wait."""

    def __init__(self, connected: int, minimum: int, waited: float) -> None:
        self.connected, self.minimum, self.waited = connected, minimum, waited
        super().__init__(
            f"only {connected} of the {minimum} nodes needed (min-clients) were connected "
            f"after waiting {waited:.0f}s (round-timeout)"
        )


class BoundedGrid(Grid):
    """A grid whose ``get_node_ids()`` waits at most ``timeout`` seconds for
    ``minimum`` connected nodes, then raises :class:`TooFewNodes`.

    Everything else goes straight to the wrapped grid.
    """

    def __init__(self, grid: Grid, minimum: int, timeout: float, poll_seconds: float = 1.0) -> None:
        self.grid, self.minimum, self.timeout, self.poll = grid, minimum, timeout, poll_seconds

    def get_node_ids(self) -> Iterable[int]:
        start = time.monotonic()
        announced = False
        while True:
            nodes = list(self.grid.get_node_ids())
            waited = time.monotonic() - start
            if len(nodes) >= self.minimum:
                return nodes
            if waited >= self.timeout:
                raise TooFewNodes(len(nodes), self.minimum, waited)
            if not announced:
                log(
                    INFO,
                    "waiting up to %gs for nodes: %d connected, %d needed",
                    self.timeout,
                    len(nodes),
                    self.minimum,
                )
                announced = True
            time.sleep(min(self.poll, max(0.0, self.timeout - waited)))

    # --- plain delegation ------------------------------------------------------
    def __getattr__(self, name: str) -> object:  # anything a concrete grid adds
        if name == "grid":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.grid, name)

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.grid.send_and_receive(messages, timeout=timeout)
