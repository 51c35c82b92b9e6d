"""The closed-form head as Flower strategies.

:class:`ClosedFormHead` asks sampled clients for the sufficient statistics of
their embeddings (:mod:`fedge.closed_form`), sums them over rounds (a client
contributes once) and solves the linear head from the totals. With
``fraction-train = 1`` one round holds every client's data and the head is the
one a single machine with all the samples would solve; the strategy then
stops the federation. With a smaller fraction each round adds fresh clients.

:class:`InitThen` runs the closed-form head for round 1 and another strategy
(FedAvg, FedProx, ...) from round 2 on, starting from that head.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from logging import INFO, WARNING

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy
from flwr.supercore import log

from fedge.closed_form import ClassStatistics, solve_head, unpack
from fedge.records import STATISTICS, STATISTICS_ORIGIN, from_record
from server.rounds import RoundReport, StopFederation


class ClosedFormHead(FedAvg):
    """Sum clients' embedding statistics; solve the linear head exactly.

    It is also a round callback: once every client has contributed, it ends
    the federation (further rounds could not change the head).
    """

    def __init__(
        self,
        *,
        solver: str = "lda",
        shrinkage: float = 0.1,
        gram: str = "triangle",
        weight_key: str = "head.weight",
        bias_key: str = "head.bias",
        **fedavg: object,
    ) -> None:
        super().__init__(**fedavg)  # type: ignore[arg-type]
        self.solver = solver
        self.shrinkage = shrinkage
        self.gram = gram
        self.weight_key = weight_key
        self.bias_key = bias_key
        self.total: ClassStatistics | None = None
        self.contributed: set[int] = set()
        self.num_nodes = 0
        self.origin: np.ndarray | None = None

    def set_origin(self, origin: np.ndarray) -> None:
        """The point clients take statistics about (any point gives the same
        head; one near the data's mean keeps float32 messages precise)."""
        if self.total is not None:
            raise RuntimeError("the origin cannot change once statistics are summed.")
        self.origin = np.asarray(origin, dtype=np.float32)

    @property
    def complete(self) -> bool:
        """Every known client has contributed its statistics."""
        return self.num_nodes > 0 and len(self.contributed) >= self.num_nodes

    def summary(self) -> None:
        log(INFO, "\t├──> Closed-form head: solver %s, shrinkage %g", self.solver, self.shrinkage)
        log(INFO, "\t├──> Gram matrix sent as: %s", self.gram)
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask clients that have not contributed yet for their statistics.

        The head's arrays do not travel down: the clients only need the config.
        """
        nodes = list(grid.get_node_ids())
        self.num_nodes = len(nodes)
        fresh = [n for n in nodes if n not in self.contributed]
        if not fresh:
            return []
        wanted = max(int(len(nodes) * self.fraction_train), self.min_train_nodes)
        chosen = random.sample(fresh, min(wanted, len(fresh)))
        log(INFO, "closed-form: asking %d of %d clients for statistics", len(chosen), len(nodes))
        config[STATISTICS] = self.gram
        config["server-round"] = server_round
        record = RecordDict({self.configrecord_key: config})
        if self.origin is not None:
            record[STATISTICS_ORIGIN] = ArrayRecord({STATISTICS_ORIGIN: Array(self.origin)})
        return self._construct_messages(record, chosen, MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Add the replies' statistics to the totals and solve the head."""
        good: list[RecordDict] = []
        for msg in replies:
            if msg.has_error():
                continue
            if STATISTICS not in msg.content.array_records:
                log(
                    WARNING,
                    "closed-form: node %d sent no statistics; ignored",
                    msg.metadata.src_node_id,
                )
                continue
            stats = unpack(from_record(msg.content[STATISTICS]), self.origin)
            self.total = stats if self.total is None else self.total + stats
            self.contributed.add(msg.metadata.src_node_id)
            good.append(msg.content)
        if not good or self.total is None or self.total.num_samples == 0:
            return None, None
        weight, bias = solve_head(self.total, self.solver, self.shrinkage)
        arrays = ArrayRecord({self.weight_key: Array(weight), self.bias_key: Array(bias)})
        metrics = dict(self.train_metrics_aggr_fn(good, self.weighted_by_key))
        metrics["clients-contributed"] = len(self.contributed)
        metrics["samples-summed"] = self.total.num_samples
        return arrays, MetricRecord(metrics)  # type: ignore[arg-type]

    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None:
        if self.complete:
            raise StopFederation(
                f"closed-form: the statistics of all {self.num_nodes} clients are summed; "
                "the head is final"
            )


def set_statistics_origin(strategy: Strategy, origin: np.ndarray) -> None:
    """Give the closed-form part of ``strategy`` (if any) its origin."""
    if isinstance(strategy, InitThen):
        set_statistics_origin(strategy.init, origin)
    elif isinstance(strategy, ClosedFormHead):
        strategy.set_origin(origin)


class InitThen(Strategy):
    """Round 1 with ``init`` (the closed-form head), later rounds with ``then``."""

    def __init__(self, init: Strategy, then: Strategy, init_rounds: int = 1) -> None:
        self.init = init
        self.then = then
        self.init_rounds = init_rounds

    def _for(self, server_round: int) -> Strategy:
        return self.init if server_round <= self.init_rounds else self.then

    def summary(self) -> None:
        log(INFO, "\t├──> Rounds 1..%d: %s", self.init_rounds, type(self.init).__name__)
        self.init.summary()
        log(INFO, "\t├──> Then: %s", type(self.then).__name__)
        self.then.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._for(server_round).configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self._for(server_round).aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._for(server_round).configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self._for(server_round).aggregate_evaluate(server_round, replies)
