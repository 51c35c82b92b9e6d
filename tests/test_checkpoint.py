"""Server checkpoints: what they hold, and what resuming a run directory keeps."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from fedge import rundir
from fedge.closed_form import ClassStatistics, pack
from fedge.config import STRATEGIES, ConfigError, FedgeConfig
from fedge.records import STATISTICS, to_record
from server import checkpoint
from server.checkpoint import Checkpoint, ResumeError
from server.strategies import build_strategy


def _cfg(tmp_path, **values) -> FedgeConfig:
    return FedgeConfig.from_mapping({"run-dir": str(tmp_path), **values})


def _ckpt(cfg: FedgeConfig, rnd: int, strategy=None) -> Checkpoint:
    strategy = strategy or build_strategy(cfg)
    return Checkpoint(
        round=rnd,
        arrays={"head.weight": np.full((3, 4), rnd, np.float32)},
        strategy_class=type(strategy).__name__,
        strategy_state=checkpoint.strategy_state(strategy),
        rng=checkpoint.capture_rng(),
        config=cfg.to_run_config(),
        fingerprint="f" * 64,
        wall_seconds=12.5,
    )


def _reply(value: float, strategy: str = "fedavg") -> Message:
    """A client's train reply: a head, or (closed-form) its embedding statistics."""
    metrics = MetricRecord({"num-examples": 10, "train-loss": 1.0})
    if strategy == "closed-form":
        rng = np.random.default_rng(int(value))
        x = rng.normal(value, 1.0, size=(10, 4)).astype(np.float32)
        stats = ClassStatistics.of(x, np.arange(10) % 3, 3)
        content = RecordDict({STATISTICS: to_record(pack(stats)), "metrics": metrics})
    else:
        weight = Array(np.full((3, 4), value, np.float32))
        content = RecordDict({"arrays": ArrayRecord({"head.weight": weight}), "metrics": metrics})
    return Message(content, dst_node_id=0, message_type="train")


def test_fedadam_state_survives_a_checkpoint(tmp_path, flower_task):
    cfg = _cfg(tmp_path, strategy="fedadam")
    live = build_strategy(cfg)
    live.current_arrays = {"head.weight": np.zeros((3, 4), np.float32)}  # as configure_train
    live.aggregate_train(1, [_reply(1.0), _reply(3.0)])
    checkpoint.save(tmp_path, _ckpt(cfg, 1, live))
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT]  # no temp files

    restored = build_strategy(cfg)
    checkpoint.restore_strategy(restored, checkpoint.load(tmp_path))
    for key in ("m_t", "v_t", "current_arrays"):
        np.testing.assert_array_equal(
            getattr(restored, key)["head.weight"], getattr(live, key)["head.weight"]
        )
    # the next round aggregates the same on both
    a, _ = live.aggregate_train(2, [_reply(2.0), _reply(5.0)])
    b, _ = restored.aggregate_train(2, [_reply(2.0), _reply(5.0)])
    np.testing.assert_array_equal(a["head.weight"].numpy(), b["head.weight"].numpy())


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_checkpoints_after_aggregating(name, tmp_path, flower_task):
    cfg = _cfg(tmp_path, strategy=name)
    live = build_strategy(cfg)
    if hasattr(live, "current_arrays"):  # what configure_train records (FedAvgM: a record)
        zero = np.zeros((3, 4), np.float32)
        live.current_arrays = (
            ArrayRecord({"head.weight": Array(zero)})
            if name == "fedavgm"
            else {"head.weight": zero}
        )
    live.aggregate_train(1, [_reply(float(v), name) for v in range(1, 6)])
    checkpoint.save(tmp_path, _ckpt(cfg, 1, live))
    restored = build_strategy(cfg)
    checkpoint.restore_strategy(restored, checkpoint.load(tmp_path))
    a, _ = live.aggregate_train(2, [_reply(float(v), name) for v in range(2, 7)])
    b, _ = restored.aggregate_train(2, [_reply(float(v), name) for v in range(2, 7)])
    np.testing.assert_array_equal(a["head.weight"].numpy(), b["head.weight"].numpy())


def test_a_closed_form_init_resumes_into_its_strategy(tmp_path, flower_task):
    cfg = _cfg(tmp_path, strategy="fedavgm", init="closed-form")
    live = build_strategy(cfg)
    head, _ = live.aggregate_train(1, [_reply(float(v), "closed-form") for v in range(1, 4)])
    # as configure_train of round 2 records it (the replies below carry the weight only)
    live.then.current_arrays = ArrayRecord({"head.weight": head["head.weight"]})
    checkpoint.save(tmp_path, _ckpt(cfg, 1, live))
    restored = build_strategy(cfg)
    checkpoint.restore_strategy(restored, checkpoint.load(tmp_path))
    np.testing.assert_array_equal(restored.init.total.gram, live.init.total.gram)
    replies = [_reply(float(v)) for v in range(2, 5)]
    a, _ = live.aggregate_train(2, replies)
    b, _ = restored.aggregate_train(2, replies)
    np.testing.assert_array_equal(a["head.weight"].numpy(), b["head.weight"].numpy())


def test_random_generators_continue_where_they_were(tmp_path):
    cfg = _cfg(tmp_path)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    checkpoint.save(tmp_path, _ckpt(cfg, 1))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.restore_rng(checkpoint.load(tmp_path).rng)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_strategy_other_than_the_checkpointed_one_is_refused(tmp_path):
    ckpt = _ckpt(_cfg(tmp_path, strategy="fedavgm"), 1)
    with pytest.raises(ResumeError, match="FedAvgM"):
        checkpoint.restore_strategy(build_strategy(_cfg(tmp_path)), ckpt)


def test_a_run_dir_with_rounds_needs_resume(tmp_path):
    cfg = _cfg(tmp_path)
    assert checkpoint.open_run(tmp_path, cfg) is None  # empty: a new run
    checkpoint.save(tmp_path, _ckpt(cfg, 2))
    with pytest.raises(ResumeError, match="already holds a run.*resume=true"):
        checkpoint.open_run(tmp_path, cfg)
    assert checkpoint.open_run(tmp_path, cfg.replace({"resume": True})).round == 2


def test_resume_may_change_rounds_and_timeouts_but_not_the_experiment(tmp_path):
    cfg = _cfg(tmp_path, **{"num-rounds": 3})
    checkpoint.save(tmp_path, _ckpt(cfg, 2))
    more = cfg.replace({"resume": True, "num-rounds": 5, "round-timeout": 30.0})
    assert checkpoint.open_run(tmp_path, more).round == 2
    with pytest.raises(ResumeError, match=r"lr: 0.01 -> 0.1.*strategy: 'fedavg' -> 'fedyogi'"):
        checkpoint.open_run(tmp_path, more.replace({"lr": 0.1, "strategy": "fedyogi"}))


def test_resume_needs_a_run_dir():
    with pytest.raises(ConfigError, match="resume=true needs run-dir"):
        FedgeConfig.from_mapping({"resume": True})


def test_an_unreadable_checkpoint_is_reported_and_left_alone(tmp_path):
    path = tmp_path / checkpoint.CHECKPOINT
    path.write_bytes(b"\x80\x05 truncated")
    with pytest.raises(ResumeError, match="cannot read the checkpoint.*Nothing was changed"):
        checkpoint.open_run(tmp_path, _cfg(tmp_path, resume=True))
    assert path.read_bytes() == b"\x80\x05 truncated"


def test_resume_keeps_each_checkpointed_round_once_and_backs_up_the_rest(tmp_path):
    rows = [{"round": r, "accuracy": a} for r, a in [(1, 0.1), (2, 0.2), (2, 0.25), (3, 0.3)]]
    for row in rows:
        rundir.append_metrics(tmp_path, row)
    kept = checkpoint.rows_for_resume(tmp_path, 2)
    assert kept == [{"round": 1, "accuracy": 0.1}, {"round": 2, "accuracy": 0.2}]
    assert rundir.read_metrics(tmp_path) == kept
    (backup,) = tmp_path.glob("metrics.jsonl.before-resume-*")
    assert len(backup.read_text().splitlines()) == 4
    assert checkpoint.rows_for_resume(tmp_path, 2) == kept  # nothing more to drop
    assert len(list(tmp_path.glob("metrics.jsonl.before-resume-*"))) == 1
