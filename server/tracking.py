"""Round callbacks that send metrics to tracking tools (TensorBoard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

from fedge.config import FedgeConfig
from fedge.errors import FedgeError
from server.reporting import metrics_row
from server.rounds import RoundCallback, RoundReport

TENSORBOARD_DIR = "tensorboard"

# metrics.jsonl key -> TensorBoard tag; the prefix groups the charts.
TENSORBOARD_TAGS = {
    "accuracy": "eval/accuracy",
    "loss": "eval/loss",
    "macro_f1": "eval/macro_f1",
    "federated_accuracy": "federated/accuracy",
    "federated_loss": "federated/loss",
    "federated_macro_f1": "federated/macro_f1",
    "train_loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "num_clients": "clients/answered",
    "num_failures": "clients/failures",
    "bytes_up": "communication/bytes_up",
    "bytes_down": "communication/bytes_down",
    "seconds": "time/round_seconds",
    "epsilon": "privacy/epsilon",
}


class TrackingUnavailable(FedgeError, RuntimeError):
    """A tracking backend is switched on but its package is not installed."""


def require_tensorboard() -> None:
    """Fail with the fix when ``tensorboard = true`` cannot be honoured."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise TrackingUnavailable(
            "config key 'tensorboard' is true but the tensorboard package is not "
            f"installed ({e}). Install it with `pip install 'fedge[tensorboard]'` "
            "(or `pip install tensorboard`), or set tensorboard=false."
        ) from None


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of a metrics row, by tag (missing values left out)."""
    out = {}
    for key, tag in TENSORBOARD_TAGS.items():
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = float(value)
    return out


class TensorBoardWriter:
    """Writes every round's metrics as scalars, step = round, flushed each round
    so `tensorboard --logdir RUN_DIR/tensorboard` shows a run while it goes."""

    def __init__(self, log_dir: Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None:
        for tag, value in scalars(metrics_row(report)).items():
            self.writer.add_scalar(tag, value, global_step=report.round)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tracking_callbacks(cfg: FedgeConfig, run_dir: Path) -> list[RoundCallback]:
    """The tracking callbacks ``cfg`` switches on."""
    if cfg.tensorboard:
        return [TensorBoardWriter(run_dir / TENSORBOARD_DIR)]
    return []
