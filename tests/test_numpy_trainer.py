"""The edge clients' numpy head against the PyTorch head: same start, same
embeddings, same seed and batch order -> the same parameters."""

import numpy as np
import pytest
import torch

from client.local_training import TrainSettings
from client.numpy_head import check_head_arrays
from client.numpy_trainer import evaluate_head_numpy, train_head_numpy
from client.trainer import evaluate_head, train_head
from fedge.models.heads import build_head

CPU = torch.device("cpu")


def _embeddings(n=240, d=48, k=4, seed=0):
    """Non-negative, clustered like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 2, (k, d))
    y = rng.integers(0, k, n)
    x = np.maximum(centers[y] + rng.normal(0, 0.7, (n, d)), 0).astype(np.float32)
    return x, y


def _settings(**kw):
    base = dict(
        epochs=6,
        batch_size=32,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-3,
        proximal_mu=0.0,
        seed=0,
    )
    base.update(kw)
    return TrainSettings(**base)


def _torch_head(kind, d, k):
    torch.manual_seed(3)
    return build_head(kind, d, k, hidden=16)


def _as_arrays(head):
    return {f"head.{n}": p.detach().numpy().copy() for n, p in head.named_parameters()}


CASES = [
    ("linear", dict(optimizer="sgd")),
    ("linear", dict(optimizer="adam", lr=0.01)),
    ("linear", dict(optimizer="sgd", proximal_mu=0.5)),
    ("mlp", dict(optimizer="sgd")),
    ("mlp", dict(optimizer="adam", lr=0.005, proximal_mu=0.1)),
    ("mlp", dict(optimizer="sgd", momentum=0.0, weight_decay=0.0, proximal_mu=1.0)),
]


@pytest.mark.parametrize(("kind", "overrides"), CASES)
def test_numpy_head_follows_the_pytorch_head(kind, overrides):
    x, y = _embeddings()
    s = _settings(**overrides)
    head = _torch_head(kind, x.shape[1], 4)
    start = _as_arrays(head)
    params = check_head_arrays(kind, start)

    ours = train_head_numpy(kind, params, x, y, s, order_seed=(1, 2, 3))
    ref = train_head(head, x, y, s, order_seed=(1, 2, 3), device=CPU)

    trained = _as_arrays(head)
    moved = max(float(np.abs(trained[k] - start[k]).max()) for k in start)
    diff = max(float(np.abs(trained[k] - params[k]).max()) for k in start)
    assert moved > 0.05  # the heads really trained
    assert diff < 1e-4, f"max |numpy - torch| = {diff:.2e}"
    assert ours.num_examples == ref.num_examples == len(y)
    assert ours.loss == pytest.approx(ref.loss, abs=1e-5)
    assert ours.accuracy == pytest.approx(ref.accuracy, abs=1e-9)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_numpy_evaluation_matches_pytorch(kind):
    x, y = _embeddings(seed=1)
    head = _torch_head(kind, x.shape[1], 4)
    ref = evaluate_head(head, x, y, 4, CPU)
    ours = evaluate_head_numpy(kind, check_head_arrays(kind, _as_arrays(head)), x, y, 4)
    assert np.array_equal(ours.confusion, ref.confusion)
    assert ours.loss == pytest.approx(ref.loss, abs=1e-5)


def test_a_different_batch_order_gives_a_different_head():
    """The agreement above is not an accident of an insensitive test."""
    x, y = _embeddings()
    s = _settings()
    heads = []
    for seed in ((1, 2, 3), (1, 2, 4)):
        params = check_head_arrays("linear", _as_arrays(_torch_head("linear", x.shape[1], 4)))
        train_head_numpy("linear", params, x, y, s, order_seed=seed)
        heads.append(params["head.weight"])
    assert np.abs(heads[0] - heads[1]).max() > 1e-3


def test_received_arrays_must_be_the_configured_head():
    with pytest.raises(ValueError, match="not a 'mlp' head"):
        check_head_arrays("mlp", {"head.weight": np.zeros((2, 3)), "head.bias": np.zeros(2)})
