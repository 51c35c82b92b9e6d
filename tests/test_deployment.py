"""A real federation on loopback: a TLS SuperLink with SuperNode authentication,
three "hospital" SuperNodes with their own image folders, `flwr run` driving the
repository's app. One federation serves the module; each test leaves it whole.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedge import rundir
from fedge.data.sources import load_dataset
from server import checkpoint
from tests.conftest import tiny_config_values, write_color_images
from tests.deployment import Federation

pytestmark = pytest.mark.slow
SITES = ("hospital-a", "hospital-b", "hospital-c")
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("deploy")
    data = {}
    for i, name in enumerate(SITES):
        data[name] = root / "data" / name
        write_color_images(data[name] / "train", n_per_class=16, seed=10 + i)
        write_color_images(data[name] / "test", n_per_class=5, seed=20 + i)
    server_data = root / "data" / "server"
    write_color_images(server_data / "train", n_per_class=2, seed=30)
    write_color_images(server_data / "test", n_per_class=10, seed=31)
    fed = Federation(root, data, server_data)
    start = time.monotonic()
    try:
        fed.start_superlink()
        for name in SITES:
            fed.register(name)
            fed.start_node(name)
        fed.wait_online(list(SITES))
        TIMINGS["setup: SuperLink up, 3 nodes registered and online"] = time.monotonic() - start
        yield fed
    finally:
        fed.close()
        print("\nwall times:", *(f"  {k}: {v:.1f}s" for k, v in TIMINGS.items()), sep="\n")


def _whole(fed: Federation) -> None:
    """Restart any SuperNode an earlier test stopped, and wait for all of them."""
    for name, node in fed.nodes.items():
        if not node.alive:
            fed.start_node(name)
    fed.wait_online(list(SITES))


def _values(fed: Federation, run_dir: Path, **extra: object) -> dict[str, object]:
    values = tiny_config_values(
        fed.server_data,
        **{"run-dir": str(run_dir), "num-rounds": 3, "round-timeout": 300.0},
    )
    values.update(extra)
    return values


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout}s")
        time.sleep(0.5)


def test_three_hospitals_train_over_tls_with_node_auth(federation, tmp_path):
    _whole(federation)
    run_dir = tmp_path / "run"
    run = federation.submit(_values(federation, run_dir), stream=True)
    TIMINGS["(a) 3 rounds, 3 hospitals, TLS + node auth"] = run.seconds
    assert run.status()["status"] == "finished:completed", run.output()
    rows = rundir.read_metrics(run_dir)
    assert [r["round"] for r in rows] == [1, 2, 3], run.output()
    node_ids = {federation.nodes[n].node_id for n in SITES}
    for row in rows:
        assert row["num_clients"] == 3 and row["num_sampled"] == 3 and row["failures"] == []
        assert row["aggregated"] is True and row["evaluation"] == "centralized"
        assert row["federated_accuracy"] is not None  # the hospitals' own test splits
    assert rows[-1]["accuracy"] > 0.6  # three colour classes: chance is 1/3
    summary = rundir.read_summary(run_dir)
    assert summary["rounds"] == 3 and summary["final_accuracy"] == rows[-1]["accuracy"]
    assert (run_dir / "model" / "head.safetensors").is_file()
    assert checkpoint.load(run_dir).round == 3
    assert all(i is not None for i in node_ids) and len(node_ids) == 3
    # Each SuperNode embedded exactly its own data-path (node config), in its own cache.
    for name, node in federation.nodes.items():
        splits = load_dataset("image-folder", str(node.data), tmp_path)
        cached = {p.name for p in (federation.root / "cache" / name).glob("embeddings/*/*")}
        assert cached == {splits.train.signature[:16], splits.test.signature[:16]}, name


def test_strangers_get_nothing(federation):
    _whole(federation)
    start = time.monotonic()
    unregistered = federation.start_stranger("stranger-unregistered", key="intruder", tls=True)
    keyless = federation.start_stranger("stranger-keyless", key=None, tls=True)
    plaintext = federation.start_stranger("stranger-plaintext", key=None, tls=False, max_retries=2)
    for proc in (unregistered, keyless, plaintext):
        proc.wait(timeout=240)
    TIMINGS["(b) unregistered, keyless and plaintext SuperNodes refused"] = time.monotonic() - start
    assert unregistered.returncode != 0
    assert "Failed to activate SuperNode" in federation.log("stranger-unregistered")
    assert keyless.returncode != 0
    assert "must be registered" in federation.log("stranger-keyless")
    assert plaintext.returncode != 0
    assert "Activated" not in federation.log("stranger-plaintext")
    registered = {federation.nodes[n].node_id for n in SITES}
    assert set(federation.node_status()) == registered  # nobody else got a node id


def test_a_hospital_killed_mid_run_does_not_stop_the_round(federation, tmp_path):
    _whole(federation)
    run_dir = tmp_path / "run"
    timeout = 60.0
    values = _values(federation, run_dir, **{"round-timeout": timeout, "fraction-evaluate": 0.0})
    start = time.monotonic()
    run = federation.submit(values, stream=False)
    _wait_for(lambda: len(rundir.read_metrics(run_dir)) >= 1, 600, "no round 1")
    federation.kill_node("hospital-c")  # round 2's training is under way
    status = federation.wait_run(run.run_id, timeout=900)
    TIMINGS["(c) 3 rounds, hospital-c killed in round 2 (round-timeout 60 s)"] = (
        time.monotonic() - start
    )
    assert status["status"] == "finished:completed", federation.log("superlink")[-3000:]
    rows = rundir.read_metrics(run_dir)
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert rows[0]["num_clients"] == 3
    killed = federation.nodes["hospital-c"].node_id
    round2 = rows[1]
    assert round2["num_clients"] == 2 and round2["aggregated"] is True
    assert [f["node_id"] for f in round2["failures"]] == [killed]
    assert round2["seconds"] < timeout + 45  # the others' round ended at the timeout
    assert rows[2]["num_clients"] == 2  # a node that is gone is skipped or timed out
    assert rundir.read_summary(run_dir)["rounds"] == 3


def test_the_server_killed_after_round_2_resumes_from_its_checkpoint(federation, tmp_path):
    _whole(federation)
    run_dir = tmp_path / "run"
    # The coordinator holds no data: the model's classes come from class-names and
    # every round is evaluated on the hospitals' own test splits.
    values = _values(
        federation,
        run_dir,
        **{"strategy": "fedadam", "data-path": "", "class-names": "blue,green,red"},
    )
    start = time.monotonic()
    first = federation.submit(values, stream=False)

    def saved_round() -> int:
        ckpt = checkpoint.load(run_dir)
        return ckpt.round if ckpt is not None else 0

    _wait_for(lambda: saved_round() >= 2, 600, "no checkpoint of round 2")
    federation.kill_server()
    assert saved_round() == 2
    killed_at = time.monotonic()
    federation.start_superlink()
    federation.wait_online(list(SITES))  # the SuperNodes reconnect by themselves
    second = federation.submit({**values, "resume": True}, stream=True)
    TIMINGS["(d) server killed after round 2: first run until the kill"] = killed_at - start
    TIMINGS["(d) SuperLink restart + resumed run (round 3)"] = time.monotonic() - killed_at
    assert second.status()["status"] == "finished:completed", second.output()
    assert "resuming" in second.output() and "after round 2" in second.output()
    assert str(first.status()["status"]).startswith("finished:")  # not running twice
    rows = rundir.read_metrics(run_dir)
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert all(r["evaluation"] == "federated" and r["num_clients"] == 3 for r in rows)
    assert checkpoint.load(run_dir).round == 3
    summary = rundir.read_summary(run_dir)
    assert summary["rounds"] == 3 and summary["final_accuracy"] == rows[-1]["accuracy"]


def test_a_round_without_enough_hospitals_is_skipped_not_hung(federation, tmp_path):
    _whole(federation)
    run_dir = tmp_path / "run"
    values = _values(
        federation,
        run_dir,
        **{"num-rounds": 1, "num-clients": 4, "min-clients": 4, "round-timeout": 5.0},
    )
    run = federation.submit(values, stream=True, timeout=300)
    TIMINGS["(e) min-clients 4 with 3 hospitals, round-timeout 5 s"] = run.seconds
    assert run.status()["status"] == "finished:completed", run.output()
    (row,) = rundir.read_metrics(run_dir)
    assert row["num_clients"] == 0 and row["aggregated"] is False
    assert "only 3 of the 4 nodes" in row["note"]
