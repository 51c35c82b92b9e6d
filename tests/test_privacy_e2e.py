"""Privacy and robustness in real federations (Flower's simulation engine, fresh processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fedge import rundir
from tests.conftest import tiny_config_values

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BROKEN = "/nonexistent/hospital-a"

# A ClientApp like the product's, except that partition 0 is a deployed client whose
# data-path does not exist: it fails every round, as a broken hospital would.
CLIENT_APP = textwrap.dedent(
    f"""
    from flwr.app import Context
    from flwr.clientapp import ClientApp
    from client.app import handle_evaluate, handle_train
    from client.mods import train_mod

    def as_deployed_if_broken(context):
        if int(context.node_config["partition-id"]) != 0:
            return context
        return Context(run_id=context.run_id, node_id=context.node_id,
                       node_config={{"data-path": "{BROKEN}"}}, state=context.state,
                       run_config=context.run_config)

    client_app = ClientApp()

    @client_app.train(mods=[train_mod])
    def train(msg, context):
        return handle_train(msg, as_deployed_if_broken(context), CLIENT_CFG)

    @client_app.evaluate()
    def evaluate(msg, context):
        return handle_evaluate(msg, as_deployed_if_broken(context), CLIENT_CFG)
    """
)


def _run_script(body: str, values: dict[str, object], num_clients: int) -> None:
    script = "\n".join(
        [
            "from fedge.config import FedgeConfig",
            f"CLIENT_CFG = FedgeConfig.from_mapping({values!r})",
            CLIENT_APP,
            textwrap.dedent(body),
            "from flwr.simulation import run_simulation",
            "run_simulation(server_app=server_app, client_app=client_app,"
            f" num_supernodes={num_clients},"
            " backend_config={'client_resources': {'num_cpus': 1}})",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_secagg_equals_fedavg_and_survives_a_dropped_client(color_folder, tmp_path):
    """One round three ways on the same start: plain FedAvg, SecAgg+, SecAgg+ with
    central DP. Partition 0 fails while training, so SecAgg+ has to recover the
    masks of a client that dropped out mid-protocol."""
    out = tmp_path / "secagg.json"
    values = tiny_config_values(
        color_folder,
        **{
            "num-clients": 4,
            "secure-aggregation": True,
            "local-epochs": 1,
            "max-samples-per-client": 32,  # each client's 40 samples, 20 % held out
        },
    )
    server = f"""
    import json
    import numpy as np
    from flwr.app import ConfigRecord
    from flwr.serverapp import ServerApp
    from fedge.models.model import build_model, load_backbone_for, trainable_state
    from fedge.records import CLASS_NAMES, FINGERPRINT, from_record, to_record
    from server.privacy import CentralDpLedger, central_accountant
    from server.rounds import PlainTraining
    from server.secagg import SecureTraining
    from server.strategies import build_strategy
    from server.validation import UpdateRules

    server_app = ServerApp()

    @server_app.main()
    def main(grid, context):
        cfg = CLIENT_CFG
        start = to_record(trainable_state(build_model(cfg, 3)))
        config = {{FINGERPRINT: load_backbone_for(cfg).fingerprint,
                   CLASS_NAMES: ["blue", "green", "red"]}}
        strategy = build_strategy(cfg)
        plain = PlainTraining(grid, strategy, UpdateRules())(1, start, ConfigRecord(config))
        secure = SecureTraining(grid, strategy, cfg)(1, start, ConfigRecord(config))
        dp_cfg = cfg.replace({{"dp": "central", "dp-clipping-norm": 1000.0,
                              "dp-noise-multiplier": 4e-5}})
        ledger = CentralDpLedger(dp_cfg, central_accountant(dp_cfg))
        noisy = SecureTraining(grid, build_strategy(dp_cfg), dp_cfg, ledger)(
            1, start, ConfigRecord(config))
        a0, a1, a2 = (from_record(o.arrays) for o in (plain, secure, noisy))
        s0 = from_record(start)
        # central DP: start + 3/4 of the mean update (a dropped client counts as 0) + noise
        expected = {{k: s0[k] + 0.75 * (a1[k] - s0[k]) for k in s0}}
        residual = np.concatenate([(a2[k] - expected[k]).ravel() for k in s0])
        json.dump({{
            "max_diff": max(float(np.abs(a0[k] - a1[k]).max()) for k in a0),
            "update_size": max(float(np.abs(a0[k] - s0[k]).max()) for k in a0),
            "plain": [plain.num_clients, plain.failures],
            "secure": [secure.num_clients, secure.failures, secure.bytes_up],
            "noisy": [noisy.num_clients, ledger.epsilon(), float(residual.std()),
                      ledger.noise_std],
        }}, open({str(out)!r}, "w"))
    """
    _run_script(server, values, num_clients=4)
    result = json.loads(out.read_text())
    print("secagg vs fedavg:", result)  # shown with -s: the measured errors
    plain_clients, plain_failures = result["plain"]
    secure_clients, secure_failures, secure_bytes = result["secure"]
    assert plain_clients == secure_clients == 3
    assert len(plain_failures) == 1 and BROKEN in plain_failures[0][1]
    (node, reason), *_ = secure_failures
    assert node == plain_failures[0][0] and "collect_masked_vectors" in reason
    assert BROKEN in reason
    # SecAgg+ quantizes to 2^22 levels over +-8: its error is orders below the update
    assert result["max_diff"] < 1e-4 < result["update_size"]
    assert secure_bytes > 0
    noisy_clients, epsilon, residual_std, noise_std = result["noisy"]
    assert noisy_clients == 3 and epsilon > 0
    assert residual_std == pytest.approx(noise_std, rel=0.15)


def test_central_dp_run_reports_epsilon_and_stops_before_the_budget(color_folder, tmp_path):
    run = tmp_path / "run"
    values = tiny_config_values(
        color_folder,
        **{
            "num-rounds": 5,
            "dp": "central",
            "dp-noise-multiplier": 1.0,
            "dp-clipping-norm": 0.5,
            "dp-target-epsilon": 10.0,  # rounds 1-3 reach 4.73, 7.08, 9.01; round 4: 10.73
        },
    )
    cmd = [sys.executable, "-m", "fedge.cli.main", "simulate", "--run-dir", str(run), "--set"]
    cmd += [f"{k}={v}" for k, v in values.items()]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = rundir.read_metrics(run)
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert [round(r["epsilon"], 2) for r in rows] == [4.73, 7.08, 9.01]
    assert all(r["aggregated"] and r["num_failures"] == 0 for r in rows)
    summary = rundir.read_summary(run)
    assert summary["epsilon"] == rows[-1]["epsilon"] <= 10.0
    assert summary["dp"] == "central" and summary["dp_delta"] == 1e-5
    assert "round 4 would take the model" in summary["dp_stopped"]
    assert "no privacy amplification" in " ".join(summary["dp_assumptions"])
    manifest = json.loads((run / "model" / "model.json").read_text())
    assert manifest["privacy"]["epsilon"] == summary["epsilon"]


def test_broken_and_hostile_clients_are_recorded_and_the_rounds_go_on(color_folder, tmp_path):
    """Partition 0 has no data, partition 1 sends 100x its update (caught by
    max-update-norm; DP-SGD updates here are below 0.01), the others train with
    local DP: every round aggregates the honest clients and records why the other
    two are missing."""
    run = tmp_path / "run"
    values = tiny_config_values(
        color_folder,
        **{
            "num-clients": 4,
            "num-rounds": 2,
            "run-dir": str(run),
            "malicious-fraction": 0.5,  # partitions 0 and 1; 0 is broken anyway
            "attack": "scale",
            "attack-scale": 100.0,
            "max-update-norm": 0.1,
            "dp": "local",
            "dp-noise-multiplier": 1.0,
            "dp-clipping-norm": 0.1,
        },
    )
    server = """
    from server.app import build_server_app
    server_app = build_server_app(CLIENT_CFG, printer=None)
    """
    _run_script(server, values, num_clients=4)
    rows = rundir.read_metrics(run)
    assert [r["round"] for r in rows] == [1, 2]
    for row in rows:
        assert row["num_clients"] == 2 and row["aggregated"]
        reasons = sorted(f["reason"] for f in row["failures"] if "evaluate" not in f["reason"])
        assert len(reasons) == 2
        assert BROKEN in reasons[0] or BROKEN in reasons[1]
        assert any("rejected update: update norm" in r for r in reasons)
        assert row["epsilon"] > 0 and row["accuracy"] is not None
    assert rows[1]["epsilon"] > rows[0]["epsilon"]
    summary = rundir.read_summary(run)
    assert summary["dp"] == "local" and len(summary["epsilon_per_client"]) == 2
    assert summary["attackers"] == 2
