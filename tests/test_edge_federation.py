"""A mixed federation in Flower's simulation engine: half the clients run the
edge client (exported backbone, numpy head), half PyTorch."""

from __future__ import annotations

import pytest

from fedge import rundir
from fedge.config import FedgeConfig
from fedge.models.model import load_backbone_for
from server.artifacts import BackboneArtifacts
from tests.conftest import tiny_config_values
from tests.test_simulation_e2e import _fedge, _set_args

pytestmark = pytest.mark.slow


def test_mixed_federation_delivers_the_backbone_once_per_edge_client(
    color_folder, tmp_path, tiny_backbone_artifacts
):
    if "onnx" not in tiny_backbone_artifacts:
        pytest.skip("no ONNX exporter here (onnx, onnxscript)")
    path, info = tiny_backbone_artifacts["onnx"]
    cache = tmp_path / "cache"
    values = tiny_config_values(
        color_folder,
        **{
            "num-clients": 4,
            "num-rounds": 2,
            "edge-fraction": 0.5,
            "edge-runtime": "onnxruntime",
            "cache-dir": str(cache),
        },
    )
    # The server's exported backbone, as `fedge export` / the export extra would leave it.
    loaded = load_backbone_for(FedgeConfig.from_mapping(values))
    assert BackboneArtifacts(loaded, cache).adopt("onnx", path).sha256 == info.sha256

    first = tmp_path / "first"
    proc = _fedge("simulate", *_set_args(values), "--run-dir", str(first))
    assert "edge clients: 2 of 4 (onnxruntime)" in proc.stdout
    rows = rundir.read_metrics(first)
    assert [r["num_clients"] for r in rows] == [4, 4]
    assert all(r["num_failures"] == 0 for r in rows)
    assert [r["backbone_bytes_down"] for r in rows] == [2 * info.size_bytes, 0]
    assert rows[0]["bytes_down"] > 2 * info.size_bytes > rows[1]["bytes_down"]
    delivery = rundir.read_summary(first)["backbone_delivery"]
    assert delivery["node_runtimes"] == {"torch": 2, "onnxruntime": 2}
    assert delivery["deliveries"] == 2 and delivery["bytes_down"] == 2 * info.size_bytes
    assert delivery["first_delivery_bytes_per_client"] == info.size_bytes
    assert rundir.read_summary(first)["final_accuracy"] > 0.6  # 3 classes: chance 0.33
    for pid in (1, 3):  # edge-fraction 0.5 of 4: partitions 1 and 3
        kept = cache / "simulated-nodes" / f"{pid}-of-4" / "artifacts" / f"{info.sha256}.onnx"
        assert kept.read_bytes() == path.read_bytes()
    assert (cache / "embeddings" / info.sha256[:16]).is_dir()  # embedded by onnxruntime

    second = tmp_path / "second"  # the nodes keep their files: nothing to deliver
    _fedge("simulate", *_set_args(values), "--run-dir", str(second))
    again = rundir.read_summary(second)["backbone_delivery"]
    assert again["deliveries"] == 0 and again["already_held"] == 2
    assert [r["backbone_bytes_down"] for r in rundir.read_metrics(second)] == [0, 0]
