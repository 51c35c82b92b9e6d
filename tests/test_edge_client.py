"""The edge client: exported backbone in an inference runtime, numpy head,
the PyTorch client's message layout; backbone artifacts kept by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from client.artifact_store import ArtifactRejected, ArtifactStore
from client.dispatch import build_dispatching_app
from client.edge_app import BackboneMissing, EdgeUnsupported, train_reply
from client.kinds import artifact_root, client_kind, edge_partitions, is_edge_partition
from client.runtimes import open_embedder
from fedge import delivery
from fedge.artifacts import ArtifactInfo
from fedge.config import FedgeConfig
from fedge.embeddings.batches import load_batch
from fedge.models.model import build_model, load_backbone_for, trainable_state
from fedge.records import ARRAYS, CLASS_NAMES, CONFIG, FINGERPRINT, METRICS, from_record, to_record
from tests.conftest import tiny_config_values

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("blue", "green", "red")


@pytest.fixture
def onnx_backbone(tiny_backbone_artifacts):
    """The tiny config's backbone exported to ONNX, with its info."""
    if "onnx" not in tiny_backbone_artifacts:
        pytest.skip("no ONNX exporter here (onnx, onnxscript)")
    return tiny_backbone_artifacts["onnx"]


@pytest.fixture
def cfg(color_folder, tmp_path):
    values = tiny_config_values(color_folder, **{"edge-runtime": "onnxruntime"})
    return FedgeConfig.from_mapping({**values, "cache-dir": str(tmp_path / "cache")})


def _node(pid: int) -> dict[str, object]:
    return {"partition-id": pid, "num-partitions": 3}


def _context(cfg, node_config) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def _message(cfg, kind, arrays=None, fingerprint=None):
    model = build_model(cfg, len(CLASSES))
    arrays = arrays if arrays is not None else trainable_state(model)
    config = ConfigRecord(
        {
            FINGERPRINT: fingerprint or load_backbone_for(cfg).fingerprint,
            CLASS_NAMES: list(CLASSES),
            "server-round": 1,
        }
    )
    msg = Message(
        RecordDict({ARRAYS: to_record(arrays), CONFIG: config}), dst_node_id=7, message_type=kind
    )
    msg.metadata.__dict__["_message_id"] = "m-1"
    return msg, arrays


def _give(cfg, node_config, onnx_backbone) -> None:
    path, info = onnx_backbone
    ArtifactStore(artifact_root(cfg, node_config)).put(path.read_bytes(), info)


@pytest.mark.slow  # exports the tiny backbone first
def test_onnx_embeddings_match_the_pytorch_backbone(cfg, onnx_backbone):
    import torch

    loaded = load_backbone_for(cfg)
    from fedge.data.federated import simulated_client

    data = simulated_client(cfg, 0, 3).train
    images, ok = load_batch(data.source, data.indices[:10], loaded.preprocessing)
    assert ok.all()
    with torch.no_grad():
        expected = loaded.module.eval()(torch.from_numpy(images)).numpy()
    got = open_embedder(onnx_backbone[0], "onnxruntime")(images)
    assert got.shape == expected.shape == (10, 512)
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.slow  # exports the tiny backbone first
def test_edge_reply_has_the_pytorch_reply_layout(cfg, onnx_backbone, flower_task):
    app = build_dispatching_app(cfg)
    edge, torch_node = _node(1), _node(0)  # edge-fraction 0: set each node's runtime
    edge["runtime"], torch_node["runtime"] = "onnxruntime", "torch"
    _give(cfg, edge, onnx_backbone)
    msg, start = _message(cfg, MessageType.TRAIN)
    edge_reply = app(_message(cfg, MessageType.TRAIN, start)[0], _context(cfg, edge))
    torch_reply = app(msg, _context(cfg, torch_node))
    assert not edge_reply.has_error() and not torch_reply.has_error()
    assert set(edge_reply.content.keys()) == set(torch_reply.content.keys()) == {ARRAYS, METRICS}
    assert set(edge_reply.content[METRICS]) == set(torch_reply.content[METRICS])
    trained = from_record(edge_reply.content[ARRAYS])
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in start.items()}
    assert not np.allclose(trained["head.weight"], start["head.weight"])

    ev_msg, _ = _message(cfg, MessageType.EVALUATE, trained)
    ev_edge = app(ev_msg, _context(cfg, edge)).content[METRICS]
    ev_torch = app(_message(cfg, MessageType.EVALUATE, trained)[0], _context(cfg, torch_node))
    assert set(ev_edge) == set(ev_torch.content[METRICS])
    assert sum(ev_edge["confusion"]) == ev_edge["num-examples"] > 0


@pytest.mark.slow  # exports the tiny backbone first
def test_edge_and_pytorch_clients_train_the_same_head(cfg, onnx_backbone, flower_task):
    """Same partition, same start: only the backbone's runtime differs."""
    app = build_dispatching_app(cfg)
    heads = {}
    for runtime in ("onnxruntime", "torch"):
        node = {**_node(2), "runtime": runtime}
        if runtime != "torch":
            _give(cfg, node, onnx_backbone)
        msg, start = _message(cfg, MessageType.TRAIN)
        reply = app(msg, _context(cfg, node))
        heads[runtime] = from_record(reply.content[ARRAYS])["head.weight"]
    diff = np.abs(heads["onnxruntime"] - heads["torch"]).max()
    moved = np.abs(heads["torch"] - start["head.weight"]).max()
    assert diff < 1e-5 and moved > 1e-3, (diff, moved)


def test_edge_client_without_the_backbone_says_so(cfg, flower_task):
    msg, _ = _message(cfg, MessageType.TRAIN)
    with pytest.raises(BackboneMissing, match="holds no onnx artifact"):
        train_reply(msg.content, _context(cfg, {**_node(1), "runtime": "onnxruntime"}), cfg)


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({"dp": "central"}, "dp=central"),
        ({"dp": "local"}, "dp=local"),
        ({"secure-aggregation": True}, "secure-aggregation=true"),
        ({"malicious-fraction": 0.34, "attack": "sign-flip"}, "attack=sign-flip"),
    ],
)
def test_edge_client_refuses_to_train_without_the_privacy_or_attack_asked_for(
    cfg, values, refused, flower_task
):
    """A node whose config makes it an edge client (the run's edge-fraction is 0)
    refuses before anything else, instead of sending a plain update."""
    private = cfg.replace(values)
    node = {**_node(0), "runtime": "onnxruntime"}  # partition 0: an attacker if any
    msg, _ = _message(private, MessageType.TRAIN)
    with pytest.raises(EdgeUnsupported, match=f"cannot train with {refused}.*runtime=torch"):
        train_reply(msg.content, _context(private, node), private)
    with pytest.raises(BackboneMissing):  # a plain run goes on to look for its backbone
        train_reply(msg.content, _context(cfg, node), cfg)


def test_edge_client_refuses_a_secagg_stage_message_clearly(cfg, flower_task):
    """SecAgg+'s first stage carries no fedge config: the refusal comes before
    the client looks for one (not a KeyError)."""
    secure = cfg.replace({"secure-aggregation": True})
    content = RecordDict({RECORD_KEY_CONFIGS: ConfigRecord({"stage": "setup"})})
    with pytest.raises(EdgeUnsupported, match="secure-aggregation=true"):
        train_reply(content, _context(secure, {**_node(1), "runtime": "edge"}), secure)


def test_an_honest_edge_partition_of_an_attack_run_trains(cfg):
    from client.edge_app import check_edge_can_train

    attack = cfg.replace({"malicious-fraction": 0.34, "attack": "scale"})  # 1 of 3: pid 0
    check_edge_can_train(attack, {**_node(1), "runtime": "edge"})
    check_edge_can_train(attack, {"runtime": "edge"})  # deployed: never an attacker
    with pytest.raises(EdgeUnsupported, match="attack=scale"):
        check_edge_can_train(attack, {**_node(0), "runtime": "edge"})


@pytest.mark.slow  # exports the tiny backbone first
def test_backbone_query_then_delivery_then_held(cfg, onnx_backbone, flower_task):
    app = build_dispatching_app(cfg)
    node = {**_node(1), "runtime": "onnxruntime"}
    path, info = onnx_backbone

    def ask(content):
        msg = Message(content, dst_node_id=7, message_type=delivery.MESSAGE_TYPE)
        msg.metadata.__dict__["_message_id"] = "q-1"
        reply = app(msg, _context(cfg, node))
        assert not reply.has_error(), reply.error
        return delivery.NodeStatus.from_content(reply.content)

    assert ask(delivery.status_request(info.fingerprint)) == delivery.NodeStatus(
        "onnxruntime", "onnx", ""
    )
    assert ask(delivery.delivery_request(info, path.read_bytes())).sha256 == info.sha256
    assert ask(delivery.status_request(info.fingerprint)).sha256 == info.sha256
    assert ask(delivery.status_request("f" * 64)).sha256 == ""  # another backbone
    torch_status = app(
        Message(
            delivery.status_request(info.fingerprint),
            dst_node_id=7,
            message_type=delivery.MESSAGE_TYPE,
        ),
        _context(cfg, {**_node(0), "runtime": "torch"}),
    )
    assert delivery.NodeStatus.from_content(torch_status.content).format == ""


@pytest.mark.slow  # exports the tiny backbone first
def test_store_rejects_bytes_that_are_not_the_announced_artifact(tmp_path, onnx_backbone):
    path, info = onnx_backbone
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactRejected, match="does not match"):
        store.put(bytes(data), info)
    assert store.find(info.fingerprint, "onnx") is None
    store.put(path.read_bytes(), info)
    assert store.find(info.fingerprint, "onnx") is not None
    assert store.find(info.fingerprint, "tflite") is None


@pytest.mark.slow  # exports the tiny backbone first
def test_store_ignores_a_file_damaged_on_disk(tmp_path, onnx_backbone):
    from client import artifact_store

    path, info = onnx_backbone
    store = ArtifactStore(tmp_path)
    copy = store.put(path.read_bytes(), info)
    artifact_store._verified.clear()  # as in a new process, which hashes files again
    copy.path.write_bytes(b"x" * info.size_bytes)
    assert store.find(info.fingerprint, "onnx") is None


@pytest.mark.slow  # exports the tiny backbone first
def test_artifact_info_round_trips_through_json(onnx_backbone):
    info = onnx_backbone[1]
    assert ArtifactInfo.from_json(info.to_json()) == info
    assert info.embedding_dim == 512 and info.preprocessing.image_size == 32


def test_edge_fraction_picks_spread_partitions():
    assert edge_partitions(10, 0.5) == [1, 3, 5, 7, 9]
    assert edge_partitions(10, 0.0) == [] and edge_partitions(4, 1.0) == [0, 1, 2, 3]
    for f in (0.1, 0.29, 0.3, 0.7):
        assert len(edge_partitions(100, f)) == round(100 * f)
    assert not is_edge_partition(0, 0.5)


def test_node_runtime_decides_the_client_kind(cfg):
    assert client_kind(cfg, {"runtime": "torch"}).kind == "torch"
    assert client_kind(cfg, {"runtime": "edge"}).edge_runtime == "onnxruntime"
    assert client_kind(cfg, {"runtime": "tflite-runtime"}).edge_runtime == "tflite-runtime"
    assert client_kind(cfg.replace({"edge-fraction": 1.0}), _node(0)).kind == "edge"
    assert client_kind(cfg, {}).kind == client_kind(cfg, {"runtime": "auto"}).kind == "torch"
    with pytest.raises(ValueError, match="runtime='tensorflow' is unknown"):
        client_kind(cfg, {"runtime": "tensorflow"})
