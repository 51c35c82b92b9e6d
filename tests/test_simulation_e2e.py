"""Real federations in fresh processes: Flower's Ray simulation engine, and
fedge's in-process backend (which must give the same results)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from fedge import rundir
from tests.conftest import ASSET_CIFAR, ASSET_WEIGHTS, require_assets, tiny_config_values

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ROUND_KEYS = {
    "round",
    "accuracy",
    "loss",
    "macro_f1",
    "num_clients",
    "bytes_up",
    "bytes_down",
    "seconds",
}
SUMMARY_KEYS = {
    "final_accuracy",
    "best_accuracy",
    "rounds",
    "wall_seconds",
    "bytes_up_per_client_round",
    "backbone",
    "fingerprint",
    "num_clients",
}


def _fedge(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fedge.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _set_args(values: dict[str, object]) -> list[str]:
    return ["--set", *(f"{k}={v}" for k, v in values.items())]


@pytest.fixture(scope="module")
def ray_run(color_folder, tmp_path_factory):
    """The tiny job, 3 rounds, on Flower's Ray simulation engine (the default)."""
    tmp = tmp_path_factory.mktemp("ray")
    # Its own cache, so the embedding pass runs whatever ran before in this session.
    values = tiny_config_values(color_folder, **{"num-rounds": 3, "cache-dir": tmp / "c"})
    proc = _fedge("simulate", *_set_args(values), "--run-dir", str(tmp / "run"))
    return tmp / "run", proc


def test_simulate_writes_the_run_directory_contract(ray_run):
    run, proc = ray_run
    table = [line.split() for line in proc.stdout.splitlines() if "/3" in line]
    assert [row[:2] for row in table] == [["1/3", "3/3"], ["2/3", "3/3"], ["3/3", "3/3"]]
    assert "embedding pass" in proc.stdout + proc.stderr
    assert f"run dir: {run}" in proc.stdout

    config = tomllib.loads((run / "config.toml").read_text())
    assert config["num-rounds"] == 3 and config["backbone"] == "resnet18"
    rows = rundir.read_metrics(run)
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert all(set(r) >= ROUND_KEYS for r in rows)
    assert all(r["num_clients"] == 3 and r["num_failures"] == 0 for r in rows)
    summary = rundir.read_summary(run)
    assert set(summary) >= SUMMARY_KEYS
    assert summary["final_accuracy"] == rows[-1]["accuracy"] > 0.6  # 3 classes: chance 0.33
    head_floats = 512 * 3 + 3
    assert head_floats * 4 < summary["bytes_up_per_client_round"] < head_floats * 4 + 400
    assert summary["trainable_parameters"] == head_floats
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["labels"] == ["blue", "green", "red"] and meta["image_size"] == 32
    assert (run / "model" / "head.safetensors").stat().st_size < 10_000
    assert (run / "model" / "model.safetensors").stat().st_size > 40_000_000
    partitions = json.loads((run / "partitions.json").read_text())
    assert np.asarray(partitions["train_label_counts"]).sum() == 3 * 32


def test_json_lines_tensorboard_and_report_of_a_real_run(color_folder, tmp_path):
    """`--log-format json` puts only JSON on stdout, its rounds are metrics.jsonl's;
    `tensorboard = true` writes the same figures; `fedge report` states them."""
    pytest.importorskip("tensorboard", reason="install fedge[tensorboard] (in the dev extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    values = tiny_config_values(color_folder, tensorboard="true")
    proc = _fedge("simulate", "--log-format", "json", *_set_args(values), "--run-dir", str(run))
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is JSON
    rows = rundir.read_metrics(run)
    rounds = [e for e in events if e["event"] == "round"]
    assert [{"event": "round", "num_rounds": 2, **r} for r in rows] == rounds
    assert events[-1]["event"] == "summary" and events[-1]["run_dir"] == str(run)
    assert events[0]["event"] == "log" and "train samples" in events[0]["message"]

    confusion = np.asarray(rows[-1]["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 30  # 3 classes x 10 test images
    assert rundir.read_summary(run)["final_confusion"] == rows[-1]["confusion"]

    tb = EventAccumulator(str(run / "tensorboard"))
    tb.Reload()
    logged = [e.value for e in tb.Scalars("eval/accuracy")]
    assert logged == pytest.approx([r["accuracy"] for r in rows])

    _fedge("report", str(run))
    md = (run / "report" / "report.md").read_text()
    assert "![confusion matrix](confusion_matrix.png)" in md
    assert f"| final accuracy | {rows[-1]['accuracy']:.4f} |" in md


def test_inprocess_backend_reproduces_the_ray_engines_run(ray_run, color_folder, tmp_path):
    run = tmp_path / "run"
    values = tiny_config_values(
        color_folder, **{"num-rounds": 3, "simulation-backend": "inprocess"}
    )
    _fedge("simulate", *_set_args(values), "--run-dir", str(run))
    keys = ("accuracy", "loss", "federated_accuracy", "train_loss", "bytes_up", "bytes_down")
    for fast, ray in zip(rundir.read_metrics(run), rundir.read_metrics(ray_run[0]), strict=True):
        assert fast["num_clients"] == ray["num_clients"] == 3
        for key in keys:
            assert fast[key] == pytest.approx(ray[key], rel=1e-5), key


def test_saved_model_reproduces_the_reported_accuracy(color_folder, tmp_path):
    run = tmp_path / "run"
    values = tiny_config_values(color_folder, **{"simulation-backend": "inprocess"})
    _fedge("simulate", *_set_args(values), "--run-dir", str(run))
    from safetensors.torch import load_file

    from fedge.data.federated import server_test
    from fedge.embeddings.extract import load_batch
    from fedge.models.model import build_model

    cfg = rundir.read_config(run)
    classes, test = server_test(cfg)
    model = build_model(cfg, len(classes))
    model.load_state_dict(load_file(run / "model" / "model.safetensors"))
    images, _ = load_batch(test.source, test.indices, model.preprocessing)
    import torch

    with torch.no_grad():
        pred = model(torch.from_numpy(images)).argmax(1).numpy()
    accuracy = float((pred == test.labels).mean())
    assert accuracy == pytest.approx(rundir.read_summary(run)["final_accuracy"], abs=1e-6)


def test_clients_with_another_backbone_refuse_and_the_server_records_why(color_folder, tmp_path):
    run = tmp_path / "run"
    server_values = tiny_config_values(color_folder, **{"num-rounds": 1, "run-dir": str(run)})
    client_values = {**server_values, "image-size": 40}
    script = textwrap.dedent(
        f"""
        from flwr.simulation import run_simulation
        from client.app import build_client_app
        from fedge.config import FedgeConfig
        from server.app import build_server_app
        server = FedgeConfig.from_mapping({server_values!r})
        client = FedgeConfig.from_mapping({client_values!r})
        run_simulation(server_app=build_server_app(server), client_app=build_client_app(client),
                       num_supernodes=3, backend_config={{"client_resources": {{"num_cpus": 1}}}})
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = rundir.read_metrics(run)
    assert row["num_clients"] == 0 and row["num_sampled"] == 3
    reasons = [f["reason"] for f in row["failures"]]
    assert reasons and all("fingerprint mismatch" in r for r in reasons)


def test_real_cifar10_subset_learns_well_above_chance(tmp_path):
    require_assets(ASSET_CIFAR, ASSET_WEIGHTS)
    run = tmp_path / "run"
    values = {
        "dataset": "cifar10",
        "data-path": str(ASSET_CIFAR),
        "weights": str(ASSET_WEIGHTS),
        "backbone": "mobilenet_v2",
        "image-size": 96,
        "num-clients": 4,
        "num-rounds": 3,
        "max-samples-per-client": 100,
        "max-test-samples": 300,
        "partitioner": "dirichlet",
        "dirichlet-alpha": 0.5,
        "seed": 1,
        "device": "cpu",
        "simulation-backend": "inprocess",
    }
    _fedge("simulate", *_set_args(values), "--run-dir", str(run))
    summary = rundir.read_summary(run)
    assert summary["final_accuracy"] > 0.45  # 10 classes: chance is 0.10
    assert summary["bytes_up_per_client_round"] <= 60_000
