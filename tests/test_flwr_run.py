"""The repository is a Flower app: Flower's own `flwr run` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from fedge import rundir
from tests.conftest import tiny_config_values
from tests.processes import free_port, pids_matching, terminate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_flwr_run_on_the_local_simulation_federation(color_folder, tmp_path):
    port = free_port()
    run = tmp_path / "run"
    overrides = tmp_path / "overrides.toml"
    overrides.write_text(
        tomli_w.dumps(tiny_config_values(color_folder, **{"run-dir": str(run), "num-rounds": 3}))
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(port),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    }
    cmd = [
        str(bin_dir / "flwr"), "run", str(ROOT), "local", "--stream",
        "--federation-config", "num-supernodes=3", "--run-config", str(overrides),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    finally:
        terminate(pids_matching("flower-superlink", str(port)))
    # `flwr run --stream` exits 0 even when the run fails: judge by the run dir.
    rows = rundir.read_metrics(run)
    assert [r["round"] for r in rows] == [1, 2, 3], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert all(r["num_clients"] == 3 for r in rows)
    assert rundir.read_summary(run)["final_accuracy"] > 0.6
