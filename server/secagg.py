"""Secure aggregation: Flower's SecAgg+ inside our round loop.

Flower 1.41 has SecAgg+ only as the legacy ``SecAggPlusWorkflow``, which asks
a legacy strategy for ``FitIns`` and hands it the (already summed) ``FitRes``.
:class:`SecureTraining` runs that workflow for the training half of each
round, with a one-round legacy strategy that serves the train messages our
Message-API strategy configured and keeps what SecAgg+ returns. The
cryptography (key agreement, Shamir shares, masking, quantization) is
Flower's; this module only carries messages and numbers in and out.

Clients send their update (new minus global head) weighted by their
``num-examples``; SecAgg+ reveals only the weighted mean update of the clients
whose masked vectors arrived. The server adds it to the global head and
passes the result, as one combined reply, to the strategy's own
``aggregate_train``, so FedAvg, FedProx and the server-side optimizers
(FedAdam, FedYogi, FedAvgM) apply as usual. Strategies that look at each
update (median, trimmed mean, Krum, Bulyan) cannot work and are refused by
the config.

Under central DP, clients clip their update to ``dp-clipping-norm`` and send
weight 1; the server scales the mean of the ``k`` surviving updates by
``k / m`` (a dropped client counts as a zero update, keeping the sensitivity
``C / m`` the noise is calibrated for), adds Flower's Gaussian noise and
composes one release into the accountant.

Dropouts: a client that fails while training (or before unmasking) is dropped
and the round completes with the rest, as long as each client keeps at least
``secagg-threshold`` of its neighbours. In flwr 1.41 a client that drops during
the first two stages (key setup, share exchange) halts the round: the round
is then not aggregated and the next one starts afresh.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from logging import WARNING
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common import (
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, add_gaussian_noise_inplace

from fedge.config import FedgeConfig
from fedge.records import ARRAY_KEYS, ARRAYS, CONFIG, LEGACY_CONFIG, NUM_EXAMPLES
from server.privacy import CentralDpLedger
from server.rounds import Preparer, TrainOutcome, configure_phase, failure_reason

# Updates are small: SecAgg+'s default range of +-8 per coordinate is ample.
CLIPPING_RANGE = 8.0
HALTED = (
    "secure aggregation halted (too few clients left, or one dropped before the "
    "key shares were exchanged); the round is not aggregated"
)


def _value_bytes(value: object) -> int:
    if isinstance(value, (bytes, str)):
        return len(value.encode() if isinstance(value, str) else value)
    if isinstance(value, list):
        return sum(_value_bytes(v) for v in value)
    return 8  # a number or bool


def _nbytes(content: RecordDict) -> int:
    """Payload bytes of every record (Flower's ``ConfigRecord.count_bytes`` rejects lists)."""
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += record.count_bytes()
        else:
            total += sum(len(k) + _value_bytes(v) for k, v in record.items())
    return total


class MeteredGrid:
    """The grid the SecAgg+ workflow talks to: the real one, but every byte of the
    protocol is counted and who failed at which stage is noted. Anything but
    ``send_and_receive`` (all the workflow uses) goes straight to the real grid."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner
        self.bytes_up = 0
        self.bytes_down = 0
        self.failures: list[tuple[int, str]] = []

    def __getattr__(self, name: str) -> object:
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        sent = list(messages)
        stage = _stage(sent[0]) if sent else "?"
        self.bytes_down += sum(_nbytes(m.content) for m in sent)
        replies = list(self.inner.send_and_receive(sent, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                reason = f"secure aggregation, stage {stage}: {failure_reason(reply.error.reason)}"
                self.failures.append((reply.metadata.src_node_id, reason))
            else:
                self.bytes_up += _nbytes(reply.content)
        answered = {r.metadata.src_node_id for r in replies}
        for node in sorted({m.metadata.dst_node_id for m in sent} - answered):
            reason = f"secure aggregation, stage {stage}: no reply within {timeout}s"
            self.failures.append((node, reason))
        return replies


def _stage(msg: Message) -> str:
    record = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    return str(record.get(SecAggKey.STAGE, "?")) if record is not None else "?"


@dataclass
class SecureSum:
    """What SecAgg+ reveals: the weighted mean of the contributors' vectors."""

    mean: list[np.ndarray]
    contributors: list[tuple[int, FitRes]]  # (node id, its plaintext weight and metrics)


class _OneRound(LegacyStrategy):
    """The legacy strategy SecAggPlusWorkflow talks to, for one round."""

    def __init__(self, grid: Grid | MeteredGrid, fitins: dict[int, FitIns]) -> None:
        self.grid = grid
        self.fitins = fitins
        self.result: SecureSum | None = None
        self._run_id = grid.run.run_id

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return [
            (GridClientProxy(node, self.grid, self._run_id), ins)  # type: ignore[arg-type]
            for node, ins in self.fitins.items()
        ]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results:
            return None, {}
        # the workflow gave every result the aggregate: the weighted mean of the updates
        mean = parameters_to_ndarrays(results[0][1].parameters)
        self.result = SecureSum(mean, [(int(p.node_id), res) for p, res in results])  # type: ignore[attr-defined]
        return results[0][1].parameters, {}

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_evaluate(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def aggregate_evaluate(self, *args: Any, **kwargs: Any) -> tuple[None, dict[str, Scalar]]:
        return None, {}

    def evaluate(self, *args: Any, **kwargs: Any) -> None:
        return None


def secure_sum(
    grid: Grid | MeteredGrid, fitins: dict[int, FitIns], rnd: int, workflow: SecAggPlusWorkflow
) -> SecureSum | None:
    """Run SecAgg+ once over ``fitins``'s nodes; None if the protocol halted."""
    strategy = _OneRound(grid, fitins)
    context = LegacyContext(
        Context(
            run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
        ),
        config=ServerConfig(num_rounds=1),
        strategy=strategy,
    )
    any_ins = next(iter(fitins.values()))
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        any_ins.parameters, keep_input=True
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WorkflowKey.CURRENT_ROUND: rnd}
    )
    workflow(grid, context)  # type: ignore[arg-type]  # a Grid or a MeteredGrid around one
    return strategy.result


def first_max_weight(cfg: FedgeConfig) -> float:
    """SecAgg+ quantizes ``update x weight / max-weight``: the closer the largest weight
    is to max-weight, the finer the result. Central DP weighs every client 1; otherwise
    the cap on samples per client, or Flower's default until a round has shown the
    weights (clients send them in the clear)."""
    if cfg.dp == "central":
        return 1.0
    return float(cfg.max_samples_per_client or 1000)


def make_workflow(cfg: FedgeConfig) -> SecAggPlusWorkflow:
    """Flower's SecAgg+ workflow, configured from the run config."""
    max_weight = first_max_weight(cfg)
    return SecAggPlusWorkflow(
        num_shares=cfg.secagg_shares,
        reconstruction_threshold=cfg.secagg_threshold,
        max_weight=max_weight,
        clipping_range=CLIPPING_RANGE,
        timeout=cfg.secagg_timeout,
    )


class SecureTraining:
    """The training half of a round through SecAgg+ (a :class:`server.rounds.TrainStep`)."""

    def __init__(
        self,
        grid: Grid,
        strategy: Strategy,
        cfg: FedgeConfig,
        dp: CentralDpLedger | None = None,
        min_replies: int = 1,
        prepare: Preparer | None = None,
    ) -> None:
        self.grid, self.strategy, self.cfg, self.dp = grid, strategy, cfg, dp
        self.min_replies, self.prepare = min_replies, prepare
        self.workflow = make_workflow(cfg)

    def _fitins(self, msgs: list[Message], keys: list[str]) -> dict[int, FitIns]:
        out: dict[int, FitIns] = {}
        for msg in msgs:
            arrays: ArrayRecord = msg.content[ARRAYS]
            config = {**dict(msg.content[CONFIG]), ARRAY_KEYS: keys}
            params = ndarrays_to_parameters([arrays[k].numpy() for k in keys])
            out[msg.metadata.dst_node_id] = FitIns(params, {LEGACY_CONFIG: json.dumps(config)})
        return out

    def __call__(self, rnd: int, arrays: ArrayRecord, config: ConfigRecord) -> TrainOutcome:
        if self.dp is not None:
            config[KEY_CLIPPING_NORM] = self.cfg.dp_clipping_norm
        msgs, note = configure_phase(
            "training", self.strategy.configure_train, rnd, arrays, config, self.grid
        )
        keys = list(arrays.keys())
        setup_down = self.prepare(msgs) if self.prepare is not None else 0
        metered = MeteredGrid(self.grid)
        summed = secure_sum(metered, self._fitins(msgs, keys), rnd, self.workflow) if msgs else None
        outcome = TrainOutcome(
            arrays=None,
            metrics=None,
            num_sampled=len(msgs),
            num_clients=0,
            failures=metered.failures,
            bytes_up=metered.bytes_up,
            bytes_down=metered.bytes_down,
            note=note,
            setup_bytes_down=setup_down,
        )
        if summed is None:
            if msgs:
                outcome.note = HALTED
                log(WARNING, "round %d: %s", rnd, HALTED)
            return outcome
        if len(summed.contributors) < self.min_replies:
            outcome.note = (
                f"not aggregated: {len(summed.contributors)} of {len(msgs)} clients took part "
                f"in the secure sum, min-clients is {self.min_replies}"
            )
            log(WARNING, "round %d: %s", rnd, outcome.note)
            return outcome
        outcome.num_clients = len(summed.contributors)
        if self.dp is None:  # next round: max-weight from the weights this round showed
            self.workflow.max_weight = float(max(r.num_examples for _, r in summed.contributors))
        outcome.client_metrics = {
            node: {**res.metrics, NUM_EXAMPLES: res.num_examples}
            for node, res in summed.contributors
        }
        combined = self._combined_reply(arrays, keys, summed, outcome.client_metrics)
        outcome.arrays, outcome.metrics = self.strategy.aggregate_train(rnd, [combined])
        return outcome

    def _combined_reply(
        self,
        arrays: ArrayRecord,
        keys: list[str],
        summed: SecureSum,
        client_metrics: dict[int, dict[str, Any]],
    ) -> Message:
        """The global head plus the mean update (noised under central DP), as one reply."""
        mean = summed.mean
        if self.dp is not None:  # dropped clients count as zero updates: sensitivity C/m
            scale = len(summed.contributors) / self.cfg.clients_per_round
            mean = [m * scale for m in mean]
        new = [
            (arrays[k].numpy().astype(np.float64) + m).astype(arrays[k].numpy().dtype)
            for k, m in zip(keys, mean, strict=True)
        ]
        if self.dp is not None:
            add_gaussian_noise_inplace(new, self.dp.noise_std)
            self.dp.record_release()
        records = [RecordDict({"metrics": MetricRecord(m)}) for m in client_metrics.values()]
        metrics = self.strategy.train_metrics_aggr_fn(records, NUM_EXAMPLES)  # type: ignore[attr-defined]
        content = RecordDict(
            {
                ARRAYS: ArrayRecord(
                    {k: Array(np.ascontiguousarray(v)) for k, v in zip(keys, new, strict=True)}
                ),
                "metrics": metrics,
            }
        )
        return Message(content, dst_node_id=0, message_type=MessageType.TRAIN)
