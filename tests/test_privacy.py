"""The server's privacy ledgers, and how a config picks its training path."""

import pickle

import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx

from fedge.config import ConfigError, FedgeConfig
from fedge.records import BUDGET_EXHAUSTED, DP_EPSILON, DP_NEXT_EPSILON
from server.privacy import CentralDpLedger, LocalDpLedger, central_accountant
from server.rounds import PlainTraining, StopFederation, TrainOutcome
from server.secagg import SecureTraining
from server.training import build_training, update_rules


def _central(**values):
    cfg = FedgeConfig.from_mapping({"dp": "central", "num-clients": 6, **values})
    return CentralDpLedger(cfg, central_accountant(cfg))


def _gaussian_epsilon(z, releases, delta=1e-5):
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.GaussianDpEvent(z), releases)
    return accountant.get_epsilon(delta)


def _outcome(clients=(), failures=(), sampled=None):
    return TrainOutcome(
        arrays=None,
        metrics=None,
        num_sampled=sampled if sampled is not None else len(clients) + len(failures),
        num_clients=len(clients),
        failures=list(failures),
        bytes_up=0,
        bytes_down=0,
        client_metrics=dict(clients),
    )


def test_central_epsilon_is_dp_accountings_gaussian_composition_without_amplification():
    ledger = _central(**{"dp-noise-multiplier": 1.0, "fraction-train": 0.5})
    for releases in range(1, 6):
        ledger.record_release()
        assert ledger.epsilon() == pytest.approx(_gaussian_epsilon(1.0, releases))
    assert ledger.epsilon() == pytest.approx(12.30, abs=0.01)  # 5 rounds at z=1, delta=1e-5
    fields = ledger.round_fields(_outcome())
    assert fields["dp_releases"] == 5 and fields["epsilon"] == ledger.epsilon()
    assert ledger.noise_std == pytest.approx(1.0 * 1.0 / 3)  # z C / m, m = 6 x 0.5


def test_central_round_without_a_release_says_why():
    ledger = _central()
    ledger.check_budget(1)
    fields = ledger.round_fields(_outcome(clients=[(1, {}), (2, {})], failures=[(3, "boom")]))
    assert fields["dp_releases"] == 0
    assert "central DP needs all 6 sampled updates, 2 arrived" in fields["note"]
    ledger.check_budget(2)
    ledger.record_release()
    assert "note" not in ledger.round_fields(_outcome(clients=[(1, {})]))


def test_central_budget_stops_before_the_round_that_would_exceed_it():
    ledger = _central(**{"dp-target-epsilon": 10.0})
    for rnd in (1, 2, 3):  # epsilon 4.73, 7.08, 9.01
        ledger.check_budget(rnd)
        ledger.record_release()
    with pytest.raises(StopFederation, match=r"round 4 would take the model from epsilon 9.01"):
        ledger.check_budget(4)
    assert ledger.epsilon() <= 10.0
    summary = ledger.summary()
    assert BUDGET_EXHAUSTED in summary["dp_stopped"]
    assert summary["epsilon"] == ledger.epsilon() and summary["dp_delta"] == 1e-5
    assert any("no privacy amplification" in a for a in summary["dp_assumptions"])


def test_local_ledger_reports_the_largest_client_epsilon():
    cfg = FedgeConfig.from_mapping({"dp": "local", "num-clients": 3})
    ledger = LocalDpLedger(cfg)
    r1 = {1: {DP_EPSILON: 1.0, DP_NEXT_EPSILON: 1.5}, 2: {DP_EPSILON: 2.0, DP_NEXT_EPSILON: 2.5}}
    assert ledger.round_fields(_outcome(r1.items()))["epsilon"] == 2.0
    r2 = {1: {DP_EPSILON: 1.5, DP_NEXT_EPSILON: 2.0}}  # client 2 not sampled: still counts
    assert ledger.round_fields(_outcome(r2.items()))["epsilon"] == 2.0
    assert ledger.summary()["epsilon_per_client"] == {"1": 1.5, "2": 2.0}


def test_local_budget_stops_when_no_client_may_train_any_more():
    cfg = FedgeConfig.from_mapping({"dp": "local", "num-clients": 2, "dp-target-epsilon": 3.0})
    ledger = LocalDpLedger(cfg)
    ledger.check_budget(1)
    clients = {
        1: {DP_EPSILON: 2.0, DP_NEXT_EPSILON: 3.5},
        2: {DP_EPSILON: 2.5, DP_NEXT_EPSILON: 2.9},
    }
    ledger.round_fields(_outcome(clients.items()))
    ledger.check_budget(2)  # client 2 may still train one round
    clients = {2: {DP_EPSILON: 2.9, DP_NEXT_EPSILON: 3.3}}
    refusal = (1, f"ClientAppException: {BUDGET_EXHAUSTED}: this client has spent ...")
    ledger.round_fields(_outcome(clients.items(), [refusal]))
    with pytest.raises(StopFederation, match="every client"):
        ledger.check_budget(3)


def test_local_budget_stops_after_a_round_where_every_client_refused():
    cfg = FedgeConfig.from_mapping({"dp": "local", "num-clients": 4, "dp-target-epsilon": 3.0})
    ledger = LocalDpLedger(cfg)
    ledger.check_budget(5)
    refusals = [(n, f"{BUDGET_EXHAUSTED}: ...") for n in (1, 2)]
    assert ledger.round_fields(_outcome(failures=refusals))["dp_clients_refused"] == 2
    with pytest.raises(StopFederation, match="no client could train in round 5"):
        ledger.check_budget(6)


def test_a_resumed_central_dp_run_keeps_its_epsilon(flower_task):
    """The checkpoint restores the wrapper's state, accountant included; the
    ledger reads the restored accountant, so epsilon does not restart at 0."""
    from server.checkpoint import Checkpoint, restore_strategy, strategy_state

    cfg = FedgeConfig.from_mapping({"dp": "central"})
    first = build_training(None, cfg)
    for _ in range(3):
        first.ledger.record_release()
    saved = pickle.loads(pickle.dumps(strategy_state(first.strategy)))
    resumed = build_training(None, cfg)
    ckpt = Checkpoint(3, {}, type(first.strategy).__name__, saved, {}, {}, "", 0.0)
    restore_strategy(resumed.strategy, ckpt)
    assert first.ledger.epsilon() > 9.0
    assert resumed.ledger.epsilon() == pytest.approx(first.ledger.epsilon())
    assert resumed.ledger.accountant is resumed.strategy.accountant


@pytest.mark.parametrize("values", [{"dp": "local"}, {"dp": "central", "secure-aggregation": True}])
def test_resuming_a_dp_run_whose_ledger_is_not_in_the_checkpoint_is_refused(values):
    with pytest.raises(ConfigError, match="would under-report epsilon"):
        FedgeConfig.from_mapping({**values, "resume": True, "run-dir": "runs/x"})


def test_update_rules_under_central_dp_refuse_unclipped_updates():
    plain = FedgeConfig.from_mapping({"max-update-norm": 5.0})
    assert update_rules(plain).max_update_norm == 5.0
    central = plain.replace({"dp": "central", "dp-clipping-norm": 2.0})
    assert update_rules(central).max_update_norm == pytest.approx(2.0002)
    tight = central.replace({"max-update-norm": 1.0})
    assert update_rules(tight).max_update_norm == 1.0


def test_each_config_gets_its_training_path(flower_task):
    grid = None  # building the training path sends nothing
    plain = build_training(grid, FedgeConfig())
    assert isinstance(plain.step, PlainTraining) and plain.ledger is None
    assert type(plain.strategy) is FedAvg
    central = build_training(
        grid, FedgeConfig.from_mapping({"dp": "central", "strategy": "fedprox"})
    )
    assert isinstance(central.strategy, DifferentialPrivacyClientSideFixedClipping)
    assert type(central.strategy.strategy) is FedProx
    assert central.strategy.num_sampled_clients == 10 and isinstance(
        central.ledger, CentralDpLedger
    )
    secure = build_training(
        grid, FedgeConfig.from_mapping({"dp": "central", "secure-aggregation": True})
    )
    assert isinstance(secure.step, SecureTraining) and secure.step.dp is secure.ledger
    assert type(secure.strategy) is FedAvg  # the noise is added by SecureTraining itself
    local = build_training(grid, FedgeConfig.from_mapping({"dp": "local"}))
    assert isinstance(local.ledger, LocalDpLedger)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dp": "central", "strategy": "fedmedian"}, "dp=central does not combine with strategy"),
        ({"dp": "local", "unfreeze-last": 1}, "dp=local trains the head with DP-SGD"),
        ({"dp": "local", "strategy": "fedprox"}, "proximal term"),
        ({"dp-target-epsilon": 5}, "needs dp=central or dp=local"),
        ({"secure-aggregation": True, "strategy": "krum"}, "hides them"),
        ({"secure-aggregation": True, "max-update-norm": 3}, "never sees an individual update"),
        ({"secure-aggregation": True, "num-clients": 2}, "at least 3 clients per round"),
        ({"strategy": "bulyan", "krum-malicious": 2}, r"at least 11 clients per round"),
        ({"strategy": "krum", "krum-malicious": 4}, r"at least 11 clients per round"),
        ({"dp": "local", "edge-fraction": 0.5}, "edge clients"),
        ({"dp": "central", "edge-fraction": 0.5}, "edge clients"),
        ({"secure-aggregation": True, "edge-fraction": 0.5}, "edge clients"),
        ({"malicious-fraction": 0.2, "attack": "scale", "edge-fraction": 0.5}, "edge clients"),
        ({"strategy": "closed-form", "dp": "local"}, "class sums and Gram matrix in the clear"),
        ({"init": "closed-form", "secure-aggregation": True}, "in the clear"),
        ({"init": "closed-form", "malicious-fraction": 0.2, "attack": "scale"}, "in the clear"),
    ],
)
def test_impossible_combinations_say_why(values, message):
    with pytest.raises(ConfigError, match=message):
        FedgeConfig.from_mapping(values)


def test_possible_combinations_are_accepted():
    FedgeConfig.from_mapping({"dp": "central", "secure-aggregation": True, "strategy": "fedprox"})
    FedgeConfig.from_mapping({"dp": "local", "secure-aggregation": True, "strategy": "fedadam"})
    FedgeConfig.from_mapping({"strategy": "bulyan", "krum-malicious": 1})
