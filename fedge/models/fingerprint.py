"""Backbone fingerprint: a hash of the name, the weights and the preprocessing.

Server and clients compare fingerprints before training, so a head is never
trained on embeddings from a different backbone.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from fedge.errors import FedgeError
from fedge.models.preprocessing import Preprocessing

if TYPE_CHECKING:  # torch stays out of edge clients, which only compare fingerprints
    import torch


class FingerprintMismatch(FedgeError, RuntimeError):
    """The server's backbone differs from the one this client has."""


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of tensor names, dtypes, shapes and values (order independent)."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def backbone_fingerprint(name: str, weights_sha256: str, preprocessing: Preprocessing) -> str:
    payload = {
        "backbone": name,
        "weights_sha256": weights_sha256,
        "preprocessing": preprocessing.to_dict(),
        "embedding": "global-avg-pool",
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_fingerprint(expected: str, actual: str, describe_local: str) -> None:
    """Raise a clear error when the server's fingerprint is not ours."""
    if expected != actual:
        raise FingerprintMismatch(
            f"backbone fingerprint mismatch: the server trains on {expected[:16]}, "
            f"this client has {actual[:16]} ({describe_local}). Refusing to train a "
            "head on different embeddings. Fix: give this client the same backbone, "
            "weights and image-size as the server's run config."
        )
