"""Simulations on an existing Ray cluster: the backend settings, and a real
run on a Ray head that the test starts (and stops: its own processes only)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fedge import rundir
from fedge.config import FedgeConfig
from simulations.runner import backend_config
from tests.conftest import tiny_config_values
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"


def test_local_ray_is_sized_to_this_machine_when_no_cluster_is_named(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    init = backend_config(FedgeConfig())["init_args"]
    assert "address" not in init and init["num_cpus"] >= 1


@pytest.mark.parametrize("where", ["key", "env"])
def test_a_named_cluster_is_joined_without_sizing_it(monkeypatch, where):
    if where == "env":
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
        cfg = FedgeConfig()
    else:
        monkeypatch.setenv("RAY_ADDRESS", "ignored:1")
        cfg = FedgeConfig.from_mapping({"ray-address": "10.0.0.5:6379"})
    init = backend_config(cfg)["init_args"]
    assert init["address"] == "10.0.0.5:6379"
    assert "num_cpus" not in init  # Ray refuses num_cpus when joining a cluster


def _wait_for(path: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            pytest.fail(f"ray start exited early:\n{path.read_text()[-3000:]}")
        if path.exists() and text in path.read_text():
            return
        time.sleep(1)
    pytest.fail(f"Ray head not up after {timeout:.0f}s:\n{path.read_text()[-3000:]}")


def _stop(head: subprocess.Popen) -> None:
    """End the head's process group (`ray start --block` and what it started),
    not every Ray on the machine as `ray stop` would."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)


_JOBS = """
import json, logging, sys, ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR)
from ray._private import state
print(json.dumps([int(j["DriverPid"]) for j in state.jobs()]))
"""


@pytest.mark.slow
def test_simulation_runs_on_an_existing_ray_cluster(color_folder, tmp_path):
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))  # Ray's socket paths must be short
    log = temp / "head.log"
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    with log.open("w") as out:
        head = subprocess.Popen(
            [str(RAY), "start", "--head", f"--port={port}", "--num-cpus=2"]
            + ["--include-dashboard=false", "--disable-usage-stats", "--block"]
            + [f"--temp-dir={temp / 'ray'}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    try:
        _wait_for(log, "Ray runtime started", head, timeout=300)
        run = tmp_path / "run"
        values = tiny_config_values(color_folder, **{"ray-address": f"127.0.0.1:{port}"})
        sets = [f"{k}={v}" for k, v in values.items()]
        sim = subprocess.Popen(
            [sys.executable, "-m", "fedge.cli.main", "simulate", "--set", *sets]
            + ["--run-dir", str(run)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        output, _ = sim.communicate(timeout=900)
        assert sim.returncode == 0, output[-3000:]
        assert [r["num_clients"] for r in rundir.read_metrics(run)] == [3, 3]
        jobs = subprocess.run(
            [sys.executable, "-c", _JOBS, f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert jobs.returncode == 0, jobs.stderr[-3000:]
        driver_pids = json.loads(jobs.stdout.strip().splitlines()[-1])
        assert sim.pid in driver_pids  # the simulation was a job of this cluster
    finally:
        _stop(head)
        subprocess.run(["rm", "-rf", str(temp)], check=False)
