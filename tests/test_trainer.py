import numpy as np
import torch
from torch import nn

from client.trainer import TrainSettings, batch_order, evaluate_head, train_head

CPU = torch.device("cpu")


def _blobs(n=300, d=16, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return x, y


def _settings(**kw):
    base = dict(
        epochs=5,
        batch_size=32,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=0.0,
        proximal_mu=0.0,
        seed=0,
    )
    base.update(kw)
    return TrainSettings(**base)


def test_head_learns_separable_embeddings():
    x, y = _blobs()
    head = nn.Linear(16, 3)
    before = evaluate_head(head, x, y, 3, CPU).accuracy
    result = train_head(head, x, y, _settings(), order_seed=(0, 1, 0), device=CPU)
    after = evaluate_head(head, x, y, 3, CPU)
    assert after.accuracy > 0.95 > before
    assert result.num_examples == 300 and result.loss < 1.0


def test_training_is_reproducible_for_a_seed():
    x, y = _blobs()
    heads = []
    for _ in range(2):
        torch.manual_seed(0)
        head = nn.Linear(16, 3)
        train_head(
            head, x, y, _settings(optimizer="adam", lr=0.01), order_seed=(1, 2, 3), device=CPU
        )
        heads.append(head.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])


def test_strong_proximal_term_keeps_weights_near_the_global_model():
    x, y = _blobs()
    drift = {}
    for mu in (0.0, 100.0):
        torch.manual_seed(0)
        head = nn.Linear(16, 3)
        start = head.weight.detach().clone()
        train_head(head, x, y, _settings(lr=0.005, proximal_mu=mu), order_seed=(0,), device=CPU)
        drift[mu] = float((head.weight.detach() - start).norm())
    assert drift[100.0] < 0.2 * drift[0.0]


def test_batch_order_covers_every_sample_once_per_epoch():
    batches = list(batch_order(10, 4, 2, (0, 1)))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate(batches[:3]), np.concatenate(batches[3:]))
