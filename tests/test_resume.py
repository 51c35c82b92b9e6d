"""A resumed run is the run that was never interrupted (simulation engine, fresh
processes): checkpoints carry the head, FedAdam's moments and the RNG states."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.numpy import load_file

from fedge import rundir
from tests.conftest import tiny_config_values
from tests.test_simulation_e2e import _fedge, _set_args

pytestmark = pytest.mark.slow


def test_two_rounds_then_resume_equals_three_rounds(color_folder, tmp_path):
    values = tiny_config_values(color_folder, strategy="fedadam", **{"server-lr": 0.05})
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _fedge("simulate", *_set_args({**values, "num-rounds": 3}), "--run-dir", str(whole))
    _fedge("simulate", *_set_args({**values, "num-rounds": 2}), "--run-dir", str(resumed))
    proc = _fedge(
        "simulate", *_set_args({**values, "num-rounds": 3, "resume": "true"}),
        "--run-dir", str(resumed), "--log-format", "json",
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["round"] for e in events if e["event"] == "round"] == [3]  # only what was left

    rows = rundir.read_metrics(resumed)
    assert [r["round"] for r in rows] == [1, 2, 3]
    for a, b in zip(rundir.read_metrics(whole), rows, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-9)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    head_a = load_file(whole / "model" / "head.safetensors")
    head_b = load_file(resumed / "model" / "head.safetensors")
    for key in head_a:
        assert abs(head_a[key] - head_b[key]).max() < 1e-5, key
    assert rundir.read_summary(resumed)["rounds"] == 3

    before = (resumed / "metrics.jsonl").read_text()
    again = subprocess.run(
        [sys.executable, "-m", "fedge.cli.main", "simulate", *_set_args(values),
         "--run-dir", str(resumed)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert (resumed / "metrics.jsonl").read_text() == before
