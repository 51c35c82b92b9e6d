import numpy as np
import pytest
import torch
from flwr.app import MessageType

from client.app import build_client_app
from client.session import open_session
from client.trainer import TrainSettings, train_head
from fedge.config import FedgeConfig
from fedge.models.fingerprint import FingerprintMismatch
from fedge.models.model import build_model, load_trainable_state, trainable_state
from fedge.records import (
    ARRAYS,
    from_record,
    record_nbytes,
)
from tests.conftest import client_context, tiny_config_values, train_message


@pytest.fixture
def cfg(color_folder):
    return FedgeConfig.from_mapping(tiny_config_values(color_folder))


def _message(cfg, kind, fingerprint=None, classes=("blue", "green", "red")):
    return train_message(cfg, kind, fingerprint, classes)


def _context(cfg, partition_id=0):
    return client_context(cfg, {"partition-id": partition_id, "num-partitions": 3})


def test_train_returns_only_the_head_changed_with_metrics(cfg, flower_task):
    msg, before = _message(cfg, MessageType.TRAIN)
    reply = build_client_app()(msg, _context(cfg))  # reads cfg from run_config
    assert not reply.has_error()
    after = from_record(reply.content[ARRAYS])
    assert set(after) == set(before) == {"head.weight", "head.bias"}
    assert not np.allclose(after["head.weight"], before["head.weight"])
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 32 and metrics["skipped-files"] == 0
    assert record_nbytes(reply.content[ARRAYS]) < 8_000  # 512x3+3 floats + headers


def test_evaluate_reports_a_confusion_matrix(cfg, flower_task):
    msg, _ = _message(cfg, MessageType.EVALUATE)
    reply = build_client_app(cfg)(msg, _context(cfg, partition_id=1))
    metrics = reply.content["metrics"]
    assert len(metrics["confusion"]) == 9
    assert sum(metrics["confusion"]) == metrics["num-examples"] > 0


def test_client_refuses_mismatched_fingerprint(cfg, flower_task):
    msg, _ = _message(cfg, MessageType.TRAIN, fingerprint="0" * 64)
    with pytest.raises(FingerprintMismatch, match="backbone fingerprint mismatch"):
        _raw_train(cfg, msg)


def _raw_train(cfg, msg):
    from client.app import handle_train

    return handle_train(msg, _context(cfg), cfg)


def test_client_refuses_classes_the_server_does_not_know(cfg, flower_task):
    from client.session import ClassMismatch

    msg, _ = _message(cfg, MessageType.TRAIN, classes=("blue", "green"))
    with pytest.raises(ClassMismatch, match=r"classes \['red'\]"):
        _raw_train(cfg, msg)


def test_client_maps_its_classes_onto_the_server_order_by_name(cfg, flower_task):
    msg, _ = _message(cfg, MessageType.TRAIN, classes=("red", "green", "blue", "violet"))
    reply = _raw_train(cfg, msg)
    assert from_record(reply.content[ARRAYS])["head.weight"].shape == (4, 512)


def test_a_cpu_client_trains_the_head_as_the_pytorch_trainer_does(cfg, flower_task):
    msg, before = _message(cfg, MessageType.TRAIN)
    reply = build_client_app(cfg)(msg, _context(cfg))  # CPU: the numpy trainer
    session = open_session(cfg, _context(cfg).node_config)
    train = session.train_embeddings()
    model = build_model(cfg, 3)
    load_trainable_state(model, before)
    train_head(
        model.head,
        train.x,
        session.label_map(["blue", "green", "red"])[train.y],
        TrainSettings.from_config(cfg),
        order_seed=(cfg.seed, 1, session.client_id),
        device=torch.device("cpu"),
    )
    ours = from_record(reply.content[ARRAYS])
    for name, expected in trainable_state(model).items():
        np.testing.assert_allclose(ours[name], expected, rtol=1e-4, atol=1e-6)
