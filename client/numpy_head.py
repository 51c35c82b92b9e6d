"""The trainable heads of ``fedge/models/heads.py`` in numpy: forward, the
cross-entropy loss and its gradients, for clients without PyTorch.

Parameters are keyed exactly as the PyTorch model names them (``head.weight``,
``head.0.weight``, ...), so the arrays a client receives and sends are the
same whichever runtime trained them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]

HEAD_KEYS = {
    "linear": ("head.weight", "head.bias"),
    "mlp": ("head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"),
}


def check_head_arrays(kind: str, arrays: Params) -> Params:
    """float32 copies of ``arrays`` after checking they are a ``kind`` head."""
    expected = set(HEAD_KEYS[kind])
    if set(arrays) != expected:
        raise ValueError(
            f"received parameters {sorted(arrays)} are not a '{kind}' head "
            f"(expected {sorted(expected)}). Edge clients train the head only: "
            "use unfreeze-last=0 and the server's head kind."
        )
    return {k: np.array(arrays[k], dtype=np.float32, copy=True) for k in HEAD_KEYS[kind]}


@dataclass
class _Forward:
    """What the backward pass needs from the forward pass."""

    x: np.ndarray
    hidden_pre: np.ndarray | None = None
    hidden: np.ndarray | None = None


def forward(kind: str, p: Params, x: np.ndarray) -> tuple[np.ndarray, _Forward]:
    """Logits (N, K) for embeddings ``x`` (N, D)."""
    if kind == "linear":
        return x @ p["head.weight"].T + p["head.bias"], _Forward(x)
    pre = x @ p["head.0.weight"].T + p["head.0.bias"]
    hidden = np.maximum(pre, 0.0)
    return hidden @ p["head.2.weight"].T + p["head.2.bias"], _Forward(x, pre, hidden)


def logits_of(kind: str, p: Params, x: np.ndarray) -> np.ndarray:
    return forward(kind, p, x)[0]


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    grad = exp / total
    grad[rows, y] -= 1.0
    return loss, (grad / len(y)).astype(logits.dtype)


def backward(kind: str, p: Params, f: _Forward, dlogits: np.ndarray) -> Params:
    """Gradients of the loss with respect to every parameter."""
    if kind == "linear":
        return {"head.weight": dlogits.T @ f.x, "head.bias": dlogits.sum(axis=0)}
    assert f.hidden is not None and f.hidden_pre is not None
    dhidden = (dlogits @ p["head.2.weight"]) * (f.hidden_pre > 0)
    return {
        "head.0.weight": dhidden.T @ f.x,
        "head.0.bias": dhidden.sum(axis=0),
        "head.2.weight": dlogits.T @ f.hidden,
        "head.2.bias": dlogits.sum(axis=0),
    }
