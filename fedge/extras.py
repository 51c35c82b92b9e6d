"""Optional parts of the install: what is there, and a clear error when not."""

from __future__ import annotations

import importlib.util

from fedge.errors import FedgeError


class MissingExtra(FedgeError, ImportError):
    """A feature needs packages this install does not have."""


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def has_torch() -> bool:
    return has_module("torch")


def require_torch(what: str) -> None:
    """Raise a clear error naming the extra when PyTorch is not installed."""
    if not has_torch():
        raise MissingExtra(
            f"{what} needs PyTorch, which this install lacks (an edge install, "
            "`fedge[edge]`, runs clients without it). Install the PyTorch stack: "
            "pip install 'fedge[torch]'."
        )


def require_reports(what: str) -> None:
    if not has_module("matplotlib"):
        raise MissingExtra(f"{what} draws plots with matplotlib: pip install 'fedge[reports]'.")


def require_opacus(what: str) -> None:
    """Raise a clear error when Opacus (DP-SGD, part of ``fedge[torch]``) is missing,
    as on a Jetson that installs JetPack's torch and plain fedge."""
    if not has_module("opacus"):
        raise MissingExtra(
            f"{what} trains with Opacus's DP-SGD, which this install lacks: "
            "pip install 'opacus>=1.6,<1.7' (fedge[torch] includes it)."
        )
