"""Device selection for torch code."""

from __future__ import annotations

import torch

from fedge.errors import FedgeError


class DeviceUnavailable(FedgeError, RuntimeError):
    """The configured device does not exist on this machine."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise DeviceUnavailable("device=cuda but no CUDA GPU is visible; use device=auto or cpu.")
    if name == "mps" and not mps:
        raise DeviceUnavailable("device=mps but MPS is not available; use device=auto or cpu.")
    return torch.device(name)
