"""Differential privacy on the server: Flower's DP wrapper and the epsilon ledgers.

``dp = "central"``: Flower's ``DifferentialPrivacyClientSideFixedClipping``
wraps the FedAvg/FedProx strategy. Clients clip their update to
``dp-clipping-norm`` (Flower's ``fixedclipping_mod``); the server adds Gaussian
noise of std ``z x C / m`` to the mean of the ``m`` sampled updates, and
Flower's ``RdpAccountant`` (Google's dp-accounting) composes one Gaussian
release per aggregated round. With secure aggregation the same mechanism runs
in ``server.secagg``, composing into the same kind of accountant.

``dp = "local"``: each client runs DP-SGD and keeps its own ledger
(``client.dp``); the server reports the largest epsilon any client reported.
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, Strategy
from flwr.supercore.differential_privacy import compute_stdv

from fedge.config import FedgeConfig
from fedge.records import BUDGET_EXHAUSTED, DP_EPSILON, DP_NEXT_EPSILON
from server.rounds import StopFederation, TrainOutcome

CENTRAL_ACCOUNTING = (
    "client-level (epsilon, delta)-DP of the sequence of released global heads, "
    "add-or-remove-one-client neighbouring; Renyi-DP accounting by dp-accounting "
    "(through Flower's RdpAccountant), one Gaussian release of std "
    "dp-noise-multiplier x dp-clipping-norm / clients-per-round per aggregated round"
)
CENTRAL_ASSUMPTIONS = [
    "no privacy amplification by sampling is credited: every round counts as if "
    "every client took part (Flower samples clients without replacement, for which "
    "Flower's wrapper accepts no amplification)",
    "the server is trusted to add the noise; clients clip their update before it leaves",
    "only the model is protected: train and evaluation metrics are sent without noise",
    "noise comes from numpy's default generator, not a cryptographic one",
]
LOCAL_ACCOUNTING = (
    "example-level (epsilon, delta)-DP of each client's own data, add-or-remove-one-"
    "example neighbouring; DP-SGD with Poisson-sampled batches (rate 1/ceil(n/batch-size)) "
    "and Renyi-DP accounting by Opacus, per client over all rounds it trained in; "
    "epsilon reported is the largest over clients"
)
LOCAL_ASSUMPTIONS = [
    "each client keeps its ledger in its Flower context: a SuperNode restarted from "
    "scratch starts a new ledger, so its data's cumulative epsilon is the sum",
    "only the model update is protected: train and evaluation metrics are sent without noise",
    "noise and sampling use torch's default generator, not a cryptographic one",
]


def central_accountant(cfg: FedgeConfig) -> RdpAccountant:
    """Flower's RDP accountant for client-level central DP, with the budget as its limit."""
    return RdpAccountant(
        PrivacyConfig(
            target_delta=cfg.dp_delta,
            population_size=cfg.num_clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
            max_epsilon=cfg.dp_target_epsilon or None,
        )
    )


def central_dp_strategy(
    cfg: FedgeConfig, strategy: Strategy, accountant: RdpAccountant
) -> DifferentialPrivacyClientSideFixedClipping:
    """Flower's client-side fixed-clipping wrapper around ``strategy``."""
    return DifferentialPrivacyClientSideFixedClipping(
        strategy,
        noise_multiplier=cfg.dp_noise_multiplier,
        clipping_norm=cfg.dp_clipping_norm,
        num_sampled_clients=cfg.clients_per_round,
        accountant=accountant,
    )


class CentralDpLedger:
    """The epsilon of central DP, from Flower's accountant, checked before each round.

    With Flower's DP wrapper the accountant is the wrapper's own (``holder``): a
    resumed run restores the wrapper's state, accountant included, from the
    checkpoint, and the ledger reads whichever accountant the wrapper holds.
    """

    def __init__(
        self,
        cfg: FedgeConfig,
        accountant: RdpAccountant,
        holder: DifferentialPrivacyClientSideFixedClipping | None = None,
    ) -> None:
        self.cfg = cfg
        self._accountant = accountant
        self._holder = holder
        self.stopped: str | None = None
        self._releases_at_start = 0  # of the current round

    @property
    def accountant(self) -> RdpAccountant:
        if self._holder is not None:
            return self._holder.accountant  # type: ignore[return-value]
        return self._accountant

    @property
    def event(self) -> GaussianPrivacyEvent:
        """One aggregated round: a Gaussian release over the round's clients."""
        return GaussianPrivacyEvent(
            noise_multiplier=self.cfg.dp_noise_multiplier,
            sample_size=self.cfg.clients_per_round,
            population_size=self.cfg.num_clients,
        )

    @property
    def noise_std(self) -> float:
        cfg = self.cfg
        return compute_stdv(cfg.dp_noise_multiplier, cfg.dp_clipping_norm, cfg.clients_per_round)

    def epsilon(self) -> float:
        return float(self.accountant.get_privacy_spent().epsilon)

    def epsilon_after_next(self) -> float:
        trial = RdpAccountant(self.accountant.config)
        trial.load_state_dict(self.accountant.state_dict())
        trial.compose(self.event)
        return float(trial.get_privacy_spent().epsilon)

    def record_release(self) -> None:
        """Compose one release (the secure-aggregation path adds the noise itself)."""
        self.accountant.compose(self.event)

    def check_budget(self, rnd: int) -> None:
        self._releases_at_start = int(self.accountant.get_privacy_spent().num_releases)
        target = self.cfg.dp_target_epsilon
        if target > 0 and self.accountant.would_exceed(self.event):
            stop = StopFederation(
                f"{BUDGET_EXHAUSTED}: round {rnd} would take the model from epsilon "
                f"{self.epsilon():.3f} to {self.epsilon_after_next():.3f}, past "
                f"dp-target-epsilon {target:g}"
            )
            self.stopped = str(stop)
            raise stop

    def round_fields(self, outcome: TrainOutcome) -> dict[str, Any]:
        releases = int(self.accountant.get_privacy_spent().num_releases)
        fields: dict[str, Any] = {"epsilon": self.epsilon(), "dp_releases": releases}
        if releases == self._releases_at_start and outcome.num_sampled and outcome.note is None:
            fields["note"] = (
                f"not aggregated, no privacy spent: central DP needs all "
                f"{self.cfg.clients_per_round} sampled updates, {outcome.num_clients} arrived"
            )
        return fields

    def summary(self) -> dict[str, Any]:
        return {
            **_settings(self.cfg),
            "epsilon": self.epsilon(),
            "dp_releases": int(self.accountant.get_privacy_spent().num_releases),
            "dp_noise_std": self.noise_std,
            "dp_clients_per_round": self.cfg.clients_per_round,
            "dp_accounting": CENTRAL_ACCOUNTING,
            "dp_assumptions": CENTRAL_ASSUMPTIONS,
            "dp_stopped": self.stopped,
        }


class LocalDpLedger:
    """The largest epsilon the clients report; stops the run once no client may train."""

    def __init__(self, cfg: FedgeConfig) -> None:
        self.cfg = cfg
        self.spent: dict[int, float] = {}  # node id -> epsilon so far
        self.next: dict[int, float] = {}  # node id -> epsilon after one more round
        self.stopped: str | None = None
        self._round = 0
        self._idle_round: int | None = None  # a round in which every client refused

    def epsilon(self) -> float:
        return max(self.spent.values(), default=0.0)

    def check_budget(self, rnd: int) -> None:
        self._round = rnd
        target = self.cfg.dp_target_epsilon
        if target <= 0:
            return
        all_known = len(self.next) >= self.cfg.num_clients
        if all_known and all(e > target for e in self.next.values()):
            stop = StopFederation(
                f"{BUDGET_EXHAUSTED}: round {rnd} would take every client past "
                f"dp-target-epsilon {target:g} (the least-spent client would reach "
                f"{min(self.next.values()):.3f})"
            )
        elif self._idle_round is not None:
            stop = StopFederation(
                f"{BUDGET_EXHAUSTED}: no client could train in round {self._idle_round} "
                f"without passing dp-target-epsilon {target:g}"
            )
        else:
            return
        self.stopped = str(stop)
        raise stop

    def round_fields(self, outcome: TrainOutcome) -> dict[str, Any]:
        for node, metrics in outcome.client_metrics.items():
            if DP_EPSILON in metrics:
                self.spent[node] = float(metrics[DP_EPSILON])
                self.next[node] = float(metrics[DP_NEXT_EPSILON])
        refused = [n for n, reason in outcome.failures if BUDGET_EXHAUSTED in reason]
        if outcome.num_clients == 0 and refused and len(refused) == len(outcome.failures):
            self._idle_round = self._round
        return {"epsilon": self.epsilon(), "dp_clients_refused": len(refused)}

    def summary(self) -> dict[str, Any]:
        return {
            **_settings(self.cfg),
            "epsilon": self.epsilon(),
            "epsilon_per_client": {str(n): e for n, e in sorted(self.spent.items())},
            "dp_accounting": LOCAL_ACCOUNTING,
            "dp_assumptions": LOCAL_ASSUMPTIONS,
            "dp_stopped": self.stopped,
        }


def _settings(cfg: FedgeConfig) -> dict[str, Any]:
    return {
        "dp": cfg.dp,
        "dp_delta": cfg.dp_delta,
        "dp_noise_multiplier": cfg.dp_noise_multiplier,
        "dp_clipping_norm": cfg.dp_clipping_norm,
        "dp_target_epsilon": cfg.dp_target_epsilon or None,
    }


PrivacyLedger = CentralDpLedger | LocalDpLedger
