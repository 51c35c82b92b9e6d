"""The edge client in whichever environment runs this: the exported backbone
in an installed runtime and the numpy head reproduce PyTorch's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from client.dispatch import build_dispatching_app
from client.local_training import TrainSettings
from client.numpy_head import check_head_arrays
from client.numpy_trainer import train_head_numpy
from client.runtimes import artifact_format, installed_runtimes, open_embedder
from fedge import delivery
from fedge.config import FedgeConfig
from fedge.data.federated import dataset_splits
from fedge.embeddings.batches import load_batch
from fedge.records import ARRAYS, CLASS_NAMES, CONFIG, FINGERPRINT, METRICS, from_record, to_record
from tests.edge.conftest import IN_EDGE_ENV
from tests.edge.fixtures import ORDER_SEED, TRAIN_CASES

# In the main environment the fixtures need an export first (seconds to a minute).
pytestmark = pytest.mark.slow


def _runnable(fixtures) -> list[str]:
    """Installed runtimes that can run an artifact the fixtures have."""
    return [r for r in installed_runtimes() if artifact_format(r) in fixtures.formats]


@pytest.fixture
def runtime(edge_fixtures) -> str:
    found = _runnable(edge_fixtures)
    if not found:
        message = (
            f"no installed runtime ({installed_runtimes()}) runs the fixtures' "
            f"artifacts ({edge_fixtures.formats})"
        )
        if IN_EDGE_ENV:
            pytest.fail(message)
        pytest.skip(message)
    return found[0]


def test_every_installed_runtime_reproduces_pytorch_embeddings(edge_fixtures, runtime):
    ref = edge_fixtures.reference
    cfg = FedgeConfig.from_mapping(edge_fixtures.config_values())
    source = dataset_splits(cfg).train  # the rows the fixtures embedded with PyTorch
    for name in _runnable(edge_fixtures):
        path, info = edge_fixtures.artifact(artifact_format(name))
        images, ok = load_batch(source, ref["indices"][:6], info.preprocessing)
        got = open_embedder(path, name)(images[ok])
        diff = np.abs(got - ref["embeddings"][:6]).max()
        assert got.shape == (6, info.embedding_dim) and diff < 1e-4, (name, diff)


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_numpy_head_reproduces_the_pytorch_trainer(edge_fixtures, case):
    ref = edge_fixtures.reference
    kind, opt = TRAIN_CASES[case]
    start = {k.split("/")[-1]: v for k, v in ref.items() if k.startswith(f"{case}/start/")}
    params = check_head_arrays(kind, start)
    s = TrainSettings(epochs=4, batch_size=16, weight_decay=1e-3, seed=0, **opt)
    train_head_numpy(kind, params, ref["embeddings"], ref["labels"], s, order_seed=ORDER_SEED)
    for key, value in params.items():
        expected = ref[f"{case}/trained/{key}"]
        assert np.abs(value - expected).max() < 1e-4, key
        assert np.abs(expected - start[key]).max() > 1e-3  # it trained


def _context(node_config) -> Context:
    return Context(run_id=1, node_id=5, node_config=node_config, state=RecordDict(), run_config={})


def _send(app, node_config, content, message_type):
    msg = Message(content, dst_node_id=5, message_type=message_type)
    msg.metadata.__dict__["_message_id"] = "m-1"  # what the SuperLink assigns on push
    reply = app(msg, _context(node_config))
    assert not reply.has_error(), reply.error.reason
    return reply.content


def test_edge_node_gets_the_backbone_then_trains_and_evaluates(
    edge_fixtures, runtime, tmp_path, flower_task
):
    values = edge_fixtures.config_values(**{"cache-dir": str(tmp_path), "edge-runtime": runtime})
    cfg = FedgeConfig.from_mapping(values)
    app = build_dispatching_app(cfg)
    node = {"data-path": str(edge_fixtures.root / "colors"), "runtime": "edge"}
    path, info = edge_fixtures.artifact(artifact_format(runtime))

    status = delivery.NodeStatus.from_content(
        _send(app, node, delivery.status_request(info.fingerprint), delivery.MESSAGE_TYPE)
    )
    assert (status.runtime, status.format, status.sha256) == (runtime, info.format, "")
    offer = delivery.delivery_request(info, path.read_bytes())
    kept = _send(app, node, offer, delivery.MESSAGE_TYPE)
    assert delivery.NodeStatus.from_content(kept).sha256 == info.sha256

    ref = edge_fixtures.reference
    start = {k.split("/")[-1]: v for k, v in ref.items() if k.startswith("linear-sgd/start/")}
    config = ConfigRecord(
        {FINGERPRINT: info.fingerprint, CLASS_NAMES: ["blue", "green", "red"], "server-round": 1}
    )
    content = RecordDict({ARRAYS: to_record(start), CONFIG: config})
    trained = _send(app, node, content, MessageType.TRAIN)
    assert set(trained.keys()) == {ARRAYS, METRICS}
    assert set(trained[METRICS]) == {
        "num-examples",
        "train-loss",
        "train-accuracy",
        "train-seconds",
        "embed-seconds",
        "client-seconds",
        "skipped-files",
    }
    head = from_record(trained[ARRAYS])
    assert not np.allclose(head["head.weight"], start["head.weight"])

    ev = RecordDict({ARRAYS: to_record(head), CONFIG: config})
    metrics = _send(app, node, ev, MessageType.EVALUATE)[METRICS]
    assert set(metrics) == {"num-examples", "loss", "accuracy", "confusion"}
    assert sum(metrics["confusion"]) == metrics["num-examples"] == 15
    assert metrics["accuracy"] > 0.6  # three colour classes: chance is 0.33
