import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import strategy as fl

from fedge.config import STRATEGIES, FedgeConfig
from server.closed_form import ClosedFormHead, InitThen
from server.strategies import aggregate_evaluate_metrics, aggregate_train_metrics, build_strategy

EXPECTED = {
    "fedavg": fl.FedAvg,
    "fedprox": fl.FedProx,
    "fedadam": fl.FedAdam,
    "fedyogi": fl.FedYogi,
    "fedavgm": fl.FedAvgM,
    "fedmedian": fl.FedMedian,
    "fedtrimmedavg": fl.FedTrimmedAvg,
    "krum": fl.Krum,
    "bulyan": fl.Bulyan,
    "closed-form": ClosedFormHead,  # fedge's own, a subclass of Flower's FedAvg
}


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_name_is_flowers_own_strategy_configured(name):
    cfg = FedgeConfig.from_mapping(
        {"strategy": name, "fraction-train": 0.5, "min-clients": 3, "num-clients": 10}
    )
    strategy = build_strategy(cfg)
    assert type(strategy) is EXPECTED[name]
    assert strategy.fraction_train == 0.5 and strategy.min_train_nodes == 3


def test_init_closed_form_runs_one_closed_form_round_before_the_strategy():
    cfg = FedgeConfig.from_mapping({"strategy": "fedprox", "init": "closed-form"})
    strategy = build_strategy(cfg)
    assert isinstance(strategy, InitThen)
    assert type(strategy.init) is ClosedFormHead and type(strategy.then) is fl.FedProx
    assert strategy._for(1) is strategy.init and strategy._for(2) is strategy.then


def test_strategy_specific_options_reach_flower():
    def build(**kw):
        return build_strategy(FedgeConfig.from_mapping(kw))

    assert build(strategy="fedprox", **{"proximal-mu": 0.3}).proximal_mu == 0.3
    assert build(strategy="fedtrimmedavg", **{"trim-beta": 0.1}).beta == 0.1
    assert build(strategy="krum", **{"krum-malicious": 1}).num_malicious_nodes == 1
    assert build(strategy="bulyan", **{"krum-malicious": 1}).num_malicious_nodes == 1
    assert build(strategy="fedadam", **{"server-lr": 0.05}).eta == 0.05


def _reply(arrays, metrics):
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content, dst_node_id=0, message_type="train")


@pytest.mark.parametrize("name", ["fedavg", "fedmedian", "fedtrimmedavg"])
def test_strategies_aggregate_heads(name, flower_task):
    strategy = build_strategy(FedgeConfig.from_mapping({"strategy": name}))
    ws = [np.full((2, 3), v, np.float32) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    replies = [
        _reply({"head.weight": w}, {"num-examples": 10, "train-loss": 1.0, "skipped-files": 1})
        for w in ws
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    agg = arrays["head.weight"].numpy()
    expected = {"fedavg": 22.0, "fedmedian": 3.0, "fedtrimmedavg": 3.0}[name]
    np.testing.assert_allclose(agg, expected)
    assert metrics["skipped-files"] == 5


@pytest.mark.parametrize(("name", "f"), [("krum", 2), ("bulyan", 1)])
def test_krum_and_bulyan_leave_out_outlying_updates(name, f, flower_task):
    cfg = FedgeConfig.from_mapping({"strategy": name, "krum-malicious": f})
    ws = [np.full((2, 3), v, np.float32) for v in (1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 50.0)]
    replies = [_reply({"head.weight": w}, {"num-examples": 10}) for w in ws]
    arrays, _ = build_strategy(cfg).aggregate_train(1, replies)
    assert np.abs(arrays["head.weight"].numpy() - 1.0).max() < 0.1  # 50 never gets in


def test_federated_evaluation_sums_confusion_matrices_exactly():
    a = MetricRecord({"num-examples": 3, "loss": 1.0, "accuracy": 2 / 3, "confusion": [2, 0, 1, 0]})
    b = MetricRecord({"num-examples": 1, "loss": 3.0, "accuracy": 1.0, "confusion": [0, 0, 0, 1]})
    out = aggregate_evaluate_metrics([RecordDict({"m": a}), RecordDict({"m": b})], "num-examples")
    assert out["accuracy"] == pytest.approx(3 / 4)
    assert out["loss"] == pytest.approx(1.5)
    assert out["per-class-recall"] == pytest.approx([1.0, 0.5])
    assert out["confusion"] == [2, 0, 1, 1]


def test_train_metrics_sum_counts_and_take_slowest_time():
    recs = [
        RecordDict(
            {
                "m": MetricRecord(
                    {"num-examples": n, "train-loss": loss, "skipped-files": s, "train-seconds": t}
                )
            }
        )
        for n, loss, s, t in ((1, 1.0, 2, 0.5), (3, 2.0, 1, 2.0))
    ]
    out = aggregate_train_metrics(recs, "num-examples")
    assert out["train-loss"] == pytest.approx(1.75)
    assert out["skipped-files"] == 3 and out["train-seconds"] == 2.0
