"""Shared pieces of the benchmark scripts: run `fedge simulate` in a fresh
process while measuring it, print Markdown tables, write JSON, note the load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge import rundir
from simulations.proctree import PeakMemory

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
DEFAULT_WEIGHTS = ASSETS / "weights" / "mobilenet_v2-imagenet-int8dequant.pth"

# The core acceptance job (issue 2; README): data and weights come on top.
ACCEPTANCE_JOB: dict[str, object] = {
    "dataset": "image-folder",
    "backbone": "mobilenet_v2",
    "image-size": 128,
    "num-clients": 10,
    "num-rounds": 10,
    "partitioner": "dirichlet",
    "dirichlet-alpha": 0.5,
    "max-samples-per-client": 200,
    "max-test-samples": 1000,
    "local-epochs": 5,
    "seed": 1,
}


@dataclass
class Measured:
    """A finished `fedge simulate` process: its run directory and figures."""

    run_dir: Path
    wall_seconds: float
    memory: dict[str, float]
    output: str

    @property
    def rows(self) -> list[dict[str, Any]]:
        return rundir.read_metrics(self.run_dir)

    @property
    def summary(self) -> dict[str, Any]:
        return rundir.read_summary(self.run_dir)


def _measured_process(
    cmd: list[str], timeout: float, what: str
) -> tuple[str, float, float, dict[str, float]]:
    """Run ``cmd`` from the repository root; its output, launch time, wall
    seconds and the peak memory of its process tree (Ray's processes included)."""
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    started = time.time()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    with PeakMemory(proc.pid, interval=0.5) as peak:
        output, _ = proc.communicate(timeout=timeout)
    wall = time.time() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{output[-4000:]}")
    return output, started, wall, peak.to_json()


def simulate(values: Mapping[str, object], run_dir: Path, timeout: float = 3600) -> Measured:
    """Run `fedge simulate --set ...` in a new process; wall time and the peak
    memory of its whole process tree."""
    sets = [f"{k}={v}" for k, v in values.items()]
    cmd = [sys.executable, "-m", "fedge.cli.main", "simulate", "--set", *sets]
    cmd += ["--run-dir", str(run_dir)]
    output, _, wall, memory = _measured_process(cmd, timeout, "fedge simulate")
    return Measured(run_dir, wall, memory, output)


@dataclass
class Arm:
    """A finished :mod:`simulations.bench_arm` process: its rounds (times are
    absolute; ``started`` is when the process was launched) and figures."""

    rows: list[dict[str, Any]]
    started: float
    wall_seconds: float
    memory: dict[str, float]
    output: str


def launch_arm(
    values: Mapping[str, object],
    log_path: Path,
    *,
    kind: str = "fedge",
    stop_at: float | None = None,
    timeout: float = 7200,
) -> Arm:
    """Run one federation in a fresh process, timed from its launch (start-up
    included), with the peak memory of its process tree."""
    cmd = [sys.executable, "-m", "simulations.bench_arm", "--kind", kind]
    cmd += ["--values", json.dumps(dict(values), default=str), "--log", str(log_path)]
    cmd += ["--stop-at", str(stop_at)] if stop_at is not None else []
    output, started, wall, memory = _measured_process(cmd, timeout, "benchmark arm")
    rows = json.loads(log_path.read_text())
    return Arm(rows, started, wall, memory, output)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with the given column keys."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def machine_note() -> dict[str, Any]:
    """CPU count and load: timings taken on a shared, busy machine are noisy."""
    one, five, fifteen = load_average()
    return {"cpus": os.cpu_count(), "load_1m": one, "load_5m": five, "load_15m": fifteen}
