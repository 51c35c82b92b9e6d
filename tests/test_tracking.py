"""TensorBoard event files written as a round callback, read back with
TensorBoard's own event reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedge.config import FedgeConfig
from server.rounds import RoundReport
from server.tracking import TENSORBOARD_DIR, TensorBoardWriter, tracking_callbacks

ROOT = Path(__file__).resolve().parents[1]


def _report(rnd: int) -> RoundReport:
    return RoundReport(
        round=rnd,
        num_sampled=4,
        num_clients=4,
        failures=[],
        bytes_up=4 * 51_496,
        bytes_down=8 * 51_496,
        seconds=0.5 * rnd,
        train={"train-loss": 1.0 / rnd},
        federated={
            "accuracy": 0.5 + 0.01 * rnd,
            "loss": 1.1,
            "macro-f1": 0.4,
            "per-class-recall": [0.5],
        },
        centralized={
            "accuracy": 0.6 + 0.1 * rnd,
            "loss": 1.0 / rnd,
            "macro_f1": 0.5,
            "per_class_recall": [0.5],
            "confusion": [[1]],
        },
    )


def test_metrics_reach_tensorboard_event_files(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="install fedge[tensorboard] (in the dev extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = FedgeConfig.from_mapping({"tensorboard": True})
    (writer,) = tracking_callbacks(cfg, tmp_path)
    assert isinstance(writer, TensorBoardWriter)
    for rnd in (1, 2, 3):
        writer.on_round_end(_report(rnd), None)  # type: ignore[arg-type]
    # no close(): each round is flushed, so a live `tensorboard` sees it

    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "eval/accuracy",
        "eval/loss",
        "federated/accuracy",
        "train/loss",
        "communication/bytes_up",
        "time/round_seconds",
    } <= tags
    acc = events.Scalars("eval/accuracy")
    assert [e.step for e in acc] == [1, 2, 3]
    assert [e.value for e in acc] == pytest.approx([0.7, 0.8, 0.9])
    assert [e.value for e in events.Scalars("communication/bytes_up")] == [4 * 51_496] * 3
    assert "privacy/epsilon" not in tags  # no DP, no epsilon


def test_tensorboard_is_off_by_default(tmp_path: Path):
    assert tracking_callbacks(FedgeConfig(), tmp_path) == []
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def test_tensorboard_on_without_the_package_fails_at_once_with_the_fix(tmp_path: Path):
    # A real process in which the tensorboard package cannot be imported.
    script = (
        "import sys; sys.modules['tensorboard'] = None\n"
        "from fedge.cli.main import main\n"
        f"sys.exit(main(['simulate', '--set', 'tensorboard=true', 'data-path={tmp_path}',"
        f" '--run-dir', '{tmp_path / 'run'}']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "tensorboard" in proc.stderr and "pip install 'fedge[tensorboard]'" in proc.stderr
    assert not (tmp_path / "run").exists()  # failed before any work
