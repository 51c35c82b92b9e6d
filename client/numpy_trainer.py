"""Local training and evaluation of the head in numpy: the edge clients'
counterpart of ``train_head``/``evaluate_head`` in ``client/trainer.py``, with
the same loss, FedProx term, optimizers and batch order."""

from __future__ import annotations

import time

import numpy as np

from client.local_training import EvalResult, TrainResult, TrainSettings, batch_order
from client.numpy_head import Params, backward, cross_entropy, forward, logits_of
from client.numpy_optim import make_optimizer
from fedge.metrics import confusion_matrix


def train_head_numpy(
    kind: str,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    s: TrainSettings,
    *,
    order_seed: tuple[int, ...],
) -> TrainResult:
    """Train the ``kind`` head ``params`` (updated in place) on embeddings ``x``
    (N, D) with labels ``y``; cross-entropy plus ``mu/2 * ||w - w_start||^2``."""
    start = time.perf_counter()
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = y.astype(np.int64)
    anchor = {k: v.copy() for k, v in params.items()}
    opt = make_optimizer(s)
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in batch_order(len(y), s.batch_size, s.epochs, order_seed):
        xb, yb = x[batch], y[batch]
        logits, cache = forward(kind, params, xb)
        loss, dlogits = cross_entropy(logits, yb)
        grads = backward(kind, params, cache, dlogits)
        if s.proximal_mu:
            for name, p in params.items():
                grads[name] = grads[name] + s.proximal_mu * (p - anchor[name])
        opt.step(params, grads)
        loss_sum += loss * len(yb)
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(yb)
    return TrainResult(
        loss_sum / max(1, seen),
        correct / max(1, seen),
        seen // max(1, s.epochs),
        time.perf_counter() - start,
    )


def evaluate_head_numpy(
    kind: str, params: Params, x: np.ndarray, y: np.ndarray, num_classes: int
) -> EvalResult:
    if len(y) == 0:
        return EvalResult(0.0, np.zeros((num_classes, num_classes), np.int64), 0)
    logits = logits_of(kind, params, np.asarray(x, dtype=np.float32))
    loss, _ = cross_entropy(logits, y.astype(np.int64))
    return EvalResult(loss, confusion_matrix(y, logits.argmax(1), num_classes), len(y))
