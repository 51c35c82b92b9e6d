"""The round loop: a Flower strategy's own configure/aggregate steps, metered.

Equivalent to ``Strategy.start`` but it records, per round, who answered,
who failed and why, the bytes that travelled each way and the wall time, and
hands a :class:`RoundReport` to callbacks (run directory, console, ...).

The training half of a round is a :class:`TrainStep`: :class:`PlainTraining`
(send, screen every update, aggregate) or secure aggregation
(``server.secagg``). A :class:`PrivacyAccounting` may stop the run before a
round that would exceed the privacy budget, and adds its figures to each row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from logging import WARNING
from typing import Any, Protocol

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.exception import InconsistentMessageReplies, PrivacyBudgetExhausted
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fedge.records import content_nbytes
from server.availability import TooFewNodes
from server.validation import UpdateRules, screen_updates

CentralEval = Callable[[int, ArrayRecord], dict[str, Any] | None]
NodePreparer = Callable[[Grid, Sequence[int], float], int]
"""Called with the nodes a phase is about to message, before it does; returns
the bytes it sent them (backbone delivery to edge clients, for example)."""


@dataclass
class RoundReport:
    """What happened in one round."""

    round: int
    num_sampled: int
    num_clients: int
    failures: list[tuple[int, str]]
    bytes_up: int
    bytes_down: int
    seconds: float
    train: dict[str, Any] = field(default_factory=dict)
    backbone_bytes_down: int = 0  # part of bytes_down: backbone artifacts delivered
    federated: dict[str, Any] | None = None
    centralized: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the metrics row


class StopFederation(Exception):
    """Raised by a callback to end the run after the current round, or by a
    :class:`PrivacyAccounting` to end it before the next one."""


class RoundCallback(Protocol):
    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None: ...


@dataclass
class TrainOutcome:
    """The training half of a round."""

    arrays: ArrayRecord | None  # None: nothing was aggregated this round
    metrics: MetricRecord | None
    num_sampled: int
    num_clients: int  # updates that went into the aggregate
    failures: list[tuple[int, str]]
    bytes_up: int
    bytes_down: int
    client_metrics: dict[int, dict[str, Any]] = field(default_factory=dict)  # by node id
    note: str | None = None  # why nothing was aggregated, when that is not obvious
    setup_bytes_down: int = 0  # backbones delivered to the round's nodes first


class TrainStep(Protocol):
    def __call__(self, rnd: int, arrays: ArrayRecord, config: ConfigRecord) -> TrainOutcome: ...


class PrivacyAccounting(Protocol):
    def check_budget(self, rnd: int) -> None:
        """Raise :class:`StopFederation` if round ``rnd`` would exceed the budget."""

    def round_fields(self, outcome: TrainOutcome) -> dict[str, Any]:
        """Figures for the round's row (``epsilon``, ...), after it trained."""


def _metrics_dict(record: MetricRecord | None) -> dict[str, Any]:
    return dict(record.items()) if record is not None else {}


_APP_EXCEPTION = "Exception ClientAppException occurred. Message: "


def failure_reason(reason: str) -> str:
    """A client's error without the runtime's traceback around it: for a ClientApp
    exception, the message it raised."""
    if _APP_EXCEPTION in reason:
        reason = reason.rsplit(_APP_EXCEPTION, 1)[1].strip()
        reason = reason.removesuffix("'>")  # the end of the runtime's wrapper
    return reason.strip()


def _exchange(
    grid: Grid, messages: Sequence[Message], timeout: float
) -> tuple[list[Message], list[tuple[int, str]], int, int]:
    """Send, wait, and sort replies into answers and failures (with reasons).

    A failure is attributed to the node the message went to: error replies for
    a node the SuperLink gave up on come from the SuperLink itself (source node
    1), so replies are matched to what was sent by ``reply_to_message_id``.
    """
    down = sum(content_nbytes(m.content) for m in messages)
    replies = list(grid.send_and_receive(messages, timeout=timeout)) if messages else []
    # push_messages stamps each message's id on it in place.
    sent_to = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
    ok = [r for r in replies if not r.has_error()]
    failures = [
        (
            sent_to.get(r.metadata.reply_to_message_id, r.metadata.src_node_id),
            failure_reason(r.error.reason),
        )
        for r in replies
        if r.has_error()
    ]
    answered = {r.metadata.reply_to_message_id for r in replies}
    failures += [
        (node, f"no reply within {timeout:g}s (round-timeout)")
        for mid, node in sorted(sent_to.items(), key=lambda item: item[1])
        if mid not in answered
    ]
    up = sum(content_nbytes(r.content) for r in ok)
    return ok, failures, up, down


def configure_phase(
    phase: str,
    configure: Callable[[int, ArrayRecord, ConfigRecord, Grid], Iterable[Message]],
    rnd: int,
    arrays: ArrayRecord,
    config: ConfigRecord,
    grid: Grid,
) -> tuple[list[Message], str | None]:
    """The strategy's messages for a phase, or none and why when too few nodes are there."""
    try:
        return list(configure(rnd, arrays, ConfigRecord(dict(config)), grid)), None
    except TooFewNodes as e:
        log(WARNING, "round %d: no %s: %s", rnd, phase, e)
        return [], f"{phase} skipped: {e}"


def _metrics_of(reply: Message) -> dict[str, Any]:
    records = reply.content.metric_records
    return dict(next(iter(records.values())).items()) if records else {}


Preparer = Callable[[Sequence[Message]], int]


def node_preparer(grid: Grid, prepare_nodes: NodePreparer | None, timeout: float) -> Preparer:
    """Run ``prepare_nodes`` for the nodes a phase will message; the bytes it sent."""

    def prepare(messages: Sequence[Message]) -> int:
        if prepare_nodes is None or not messages:
            return 0
        return prepare_nodes(grid, [m.metadata.dst_node_id for m in messages], timeout)

    return prepare


class PlainTraining:
    """Send the strategy's train messages, screen every update, aggregate the rest
    when at least ``min_replies`` passed."""

    def __init__(
        self,
        grid: Grid,
        strategy: Strategy,
        rules: UpdateRules,
        timeout: float = 3600.0,
        min_replies: int = 1,
        prepare: Preparer | None = None,
    ) -> None:
        self.grid, self.strategy, self.rules = grid, strategy, rules
        self.timeout, self.min_replies, self.prepare = timeout, min_replies, prepare

    def __call__(self, rnd: int, arrays: ArrayRecord, config: ConfigRecord) -> TrainOutcome:
        msgs, note = configure_phase(
            "training", self.strategy.configure_train, rnd, arrays, config, self.grid
        )
        setup_down = self.prepare(msgs) if self.prepare is not None else 0
        replies, failures, up, down = _exchange(self.grid, msgs, self.timeout)
        accepted, rejected = screen_updates(replies, arrays, self.rules)
        new_arrays, metrics = None, None
        if msgs and len(accepted) < self.min_replies:
            note = (
                f"not aggregated: {len(accepted)} of {len(msgs)} clients sent a usable "
                f"update, min-clients is {self.min_replies}"
            )
            log(WARNING, "round %d: %s", rnd, note)
        elif msgs:
            try:
                new_arrays, metrics = self.strategy.aggregate_train(rnd, accepted)
            except InconsistentMessageReplies as e:
                log(WARNING, "round %d: replies could not be aggregated (%s)", rnd, e)
                note = f"not aggregated: inconsistent replies ({e})"
        return TrainOutcome(
            arrays=new_arrays,
            metrics=metrics,
            num_sampled=len(msgs),
            num_clients=len(accepted),
            failures=failures + rejected,
            bytes_up=up,
            bytes_down=down,
            client_metrics={r.metadata.src_node_id: _metrics_of(r) for r in accepted},
            note=note,
            setup_bytes_down=setup_down,
        )


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    *,
    num_rounds: int,
    train_config: ConfigRecord,
    evaluate_config: ConfigRecord,
    central_eval: CentralEval | None,
    callbacks: Sequence[RoundCallback] = (),
    timeout: float = 3600.0,
    first_round: int = 1,
    min_replies: int = 1,
    prepare_nodes: NodePreparer | None = None,
    training: TrainStep | None = None,
    accounting: PrivacyAccounting | None = None,
) -> ArrayRecord:
    """Run rounds ``first_round..num_rounds``; return the final global arrays.

    Each wait for replies lasts at most ``timeout`` seconds; a round aggregates
    the training replies it has only if at least ``min_replies`` arrived. Pass a
    :class:`~server.availability.BoundedGrid` to bound the wait for nodes too.
    ``prepare_nodes`` runs before each phase with the nodes it will message.
    ``training`` defaults to :class:`PlainTraining` with the default update checks
    (a given one prepares its own nodes).
    """
    prepare = node_preparer(grid, prepare_nodes, timeout)
    train = training or PlainTraining(
        grid, strategy, UpdateRules(), timeout, min_replies, prepare=prepare
    )
    for rnd in range(first_round, num_rounds + 1):
        start = time.perf_counter()
        try:
            if accounting is not None:
                accounting.check_budget(rnd)
            outcome = train(rnd, arrays, ConfigRecord(dict(train_config)))
        except (StopFederation, PrivacyBudgetExhausted) as e:
            log(WARNING, "stopping before round %d: %s", rnd, e)
            break
        if outcome.arrays is not None:
            arrays = outcome.arrays
        setup_down = outcome.setup_bytes_down

        eval_msgs, eval_note = configure_phase(
            "evaluation", strategy.configure_evaluate, rnd, arrays, evaluate_config, grid
        )
        setup_down += prepare(eval_msgs)
        eval_replies, eval_failures, _, eval_down = _exchange(grid, eval_msgs, timeout)
        federated = strategy.aggregate_evaluate(rnd, eval_replies) if eval_replies else None
        centralized = central_eval(rnd, arrays) if central_eval is not None else None

        privacy = accounting.round_fields(outcome) if accounting is not None else {}
        notes = [n for n in (outcome.note, privacy.pop("note", None), eval_note) if n]
        report = RoundReport(
            round=rnd,
            num_sampled=outcome.num_sampled,
            num_clients=outcome.num_clients,
            failures=outcome.failures + [(n, f"evaluate: {r}") for n, r in eval_failures],
            bytes_up=outcome.bytes_up,
            bytes_down=outcome.bytes_down + eval_down + setup_down,
            seconds=time.perf_counter() - start,
            train=_metrics_dict(outcome.metrics),
            federated=_metrics_dict(federated) if federated is not None else None,
            centralized=centralized,
            extra={
                "aggregated": outcome.arrays is not None,
                **({"note": "; ".join(notes)} if notes else {}),
                **privacy,
            },
            backbone_bytes_down=setup_down,
        )
        for node, reason in report.failures:
            log(WARNING, "round %d: node %d failed: %s", rnd, node, reason)
        stop: StopFederation | None = None
        for cb in callbacks:
            try:
                cb.on_round_end(report, arrays)
            except StopFederation as e:
                stop = e
        if stop is not None:
            log(WARNING, "stopping after round %d: %s", rnd, stop)
            break
    return arrays
