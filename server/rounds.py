"""The round loop: a Flower strategy's own configure/aggregate steps, metered.

Equivalent to ``Strategy.start`` but it records, per round, who answered,
who failed and why, the bytes that travelled each way and the wall time, and
hands a :class:`RoundReport` to callbacks (run directory, console, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from logging import WARNING
from typing import Any, Protocol

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fedge.records import content_nbytes
from server.availability import TooFewNodes

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
    """Raised by a callback to end the run after the current round."""


class RoundCallback(Protocol):
    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None: ...


def _metrics_dict(record: MetricRecord | None) -> dict[str, Any]:
    return dict(record.items()) if record is not None else {}


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
        (sent_to.get(r.metadata.reply_to_message_id, r.metadata.src_node_id), r.error.reason)
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


def _configure(
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
) -> ArrayRecord:
    """Run rounds ``first_round..num_rounds``; return the final global arrays.

    Each wait for replies lasts at most ``timeout`` seconds; a round aggregates
    the training replies it has only if at least ``min_replies`` arrived. Pass a
    :class:`~server.availability.BoundedGrid` to bound the wait for nodes too.
    ``prepare_nodes`` runs before each phase with the nodes it will message.
    """

    def prepare(messages: Sequence[Message]) -> int:
        if prepare_nodes is None or not messages:
            return 0
        return prepare_nodes(grid, [m.metadata.dst_node_id for m in messages], timeout)

    for rnd in range(first_round, num_rounds + 1):
        start = time.perf_counter()
        train_msgs, note = _configure(
            "training", strategy.configure_train, rnd, arrays, train_config, grid
        )
        setup_down = prepare(train_msgs)
        replies, failures, up, down = _exchange(grid, train_msgs, timeout)
        new_arrays, train_metrics = None, None
        if train_msgs and len(replies) < min_replies:
            note = (
                f"not aggregated: {len(replies)} of {len(train_msgs)} clients answered, "
                f"min-clients is {min_replies}"
            )
            log(WARNING, "round %d: %s", rnd, note)
        elif train_msgs:
            try:
                new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
            except InconsistentMessageReplies as e:
                log(WARNING, "round %d: replies could not be aggregated (%s)", rnd, e)
                note = f"not aggregated: inconsistent replies ({e})"
        if new_arrays is not None:
            arrays = new_arrays

        eval_msgs, eval_note = _configure(
            "evaluation", strategy.configure_evaluate, rnd, arrays, evaluate_config, grid
        )
        setup_down += prepare(eval_msgs)
        eval_replies, eval_failures, _, eval_down = _exchange(grid, eval_msgs, timeout)
        federated = strategy.aggregate_evaluate(rnd, eval_replies) if eval_replies else None
        centralized = central_eval(rnd, arrays) if central_eval is not None else None

        notes = [n for n in (note, eval_note) if n]
        report = RoundReport(
            round=rnd,
            num_sampled=len(train_msgs),
            num_clients=len(replies),
            failures=failures + [(n, f"evaluate: {r}") for n, r in eval_failures],
            bytes_up=up,
            bytes_down=down + eval_down + setup_down,
            seconds=time.perf_counter() - start,
            train=_metrics_dict(train_metrics),
            federated=_metrics_dict(federated) if federated is not None else None,
            centralized=centralized,
            extra={
                "aggregated": new_arrays is not None,
                **({"note": "; ".join(notes)} if notes else {}),
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
