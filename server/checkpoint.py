"""Server state that survives a restart: a checkpoint after every completed round.

``RUN_DIR/checkpoint.pkl`` holds the round number, the global trainable arrays,
the strategy's own state (FedAdam's moments, FedAvgM's momentum, ...), the
random number generators' states, the run's configuration, the backbone
fingerprint and the wall time so far. It is replaced atomically after the
round's row is in ``metrics.jsonl``, so a crash at any moment leaves either
the previous or the new checkpoint, never half of one.

With ``resume = true`` the server starts from the round after the checkpoint;
rows of ``metrics.jsonl`` for later rounds (written just before a crash) are
dropped, so each round appears exactly once. The file is a pickle: resume only
run directories you (your own server) wrote.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Strategy

from fedge import rundir
from fedge.config import FedgeConfig, Scalar
from fedge.errors import FedgeError
from fedge.records import from_record
from server.rounds import RoundReport

CHECKPOINT = "checkpoint.pkl"
FORMAT_VERSION = 1
# Keys that may change between a run and its resumption; any other change would
# make the resumed rounds a different experiment.
RESUMABLE_CHANGES = frozenset(
    {
        "resume",
        "num-rounds",
        "round-timeout",
        "device",
        "num-cpus",
        "num-gpus",
        "embed-batch-size",
        "cache-dir",
        "run-dir",
    }
)


class ResumeError(FedgeError, ValueError):
    """A run directory that cannot be started or continued as asked."""


@dataclass
class Checkpoint:
    """The server's state after ``round``."""

    round: int
    arrays: dict[str, np.ndarray]
    strategy_class: str
    strategy_state: dict[str, Any]
    rng: dict[str, Any]
    config: dict[str, Scalar]
    fingerprint: str
    wall_seconds: float
    saved_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    version: int = FORMAT_VERSION


# --- strategy and RNG state ----------------------------------------------------


@dataclass(frozen=True)
class SavedState:
    """An attribute saved through its own ``state_dict()`` (e.g. Flower's privacy
    accountant, which holds modules and cannot be pickled)."""

    state: Any


def _saves_itself(value: Any) -> bool:
    return callable(getattr(value, "state_dict", None)) and callable(
        getattr(value, "load_state_dict", None)
    )


def strategy_state(strategy: Strategy) -> dict[str, Any]:
    """The strategy's attributes, functions left out (they come from the config)."""
    return {
        k: SavedState(v.state_dict()) if _saves_itself(v) else v
        for k, v in vars(strategy).items()
        if not callable(v)
    }


def restore_strategy(strategy: Strategy, ckpt: Checkpoint) -> None:
    """Put the checkpoint's state into a strategy freshly built from the same config."""
    name = type(strategy).__name__
    if name != ckpt.strategy_class:
        raise ResumeError(
            f"the checkpoint was written by strategy {ckpt.strategy_class}, this run "
            f"builds {name}; resume with the run's own strategy or start a new run-dir."
        )
    for key, value in ckpt.strategy_state.items():
        if isinstance(value, SavedState):
            getattr(strategy, key).load_state_dict(value.state)
        else:
            setattr(strategy, key, value)


def capture_rng() -> dict[str, Any]:
    return {
        "random": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


# --- files -----------------------------------------------------------------------


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT


def save(run_dir: Path, ckpt: Checkpoint) -> None:
    """Write the checkpoint atomically (temporary file, fsync, rename)."""
    path = checkpoint_path(run_dir)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(ckpt, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(run_dir: Path) -> Checkpoint | None:
    """The run directory's checkpoint, or None when it has none."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            ckpt = pickle.load(f)
    except Exception as e:  # a truncated or foreign file
        raise ResumeError(
            f"cannot read the checkpoint '{path}' ({type(e).__name__}: {e}). Nothing was "
            "changed; move the file away to restart this run from round 1, or start a "
            "new run-dir."
        ) from e
    if not isinstance(ckpt, Checkpoint) or ckpt.version != FORMAT_VERSION:
        raise ResumeError(
            f"'{path}' is not a fedge checkpoint of format {FORMAT_VERSION}; start a new "
            "run-dir, or resume it with the fedge version that wrote it."
        )
    return ckpt


# --- starting or resuming a run directory -------------------------------------


def config_changes(saved: dict[str, Scalar], cfg: FedgeConfig) -> list[str]:
    """Keys whose value differs from the checkpointed run's and may not."""
    now = cfg.to_run_config()
    keys = (set(saved) | set(now)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if saved.get(k) != now.get(k))


def open_run(run_dir: Path, cfg: FedgeConfig) -> Checkpoint | None:
    """Check that ``cfg`` may start or continue ``run_dir``; return the checkpoint
    to continue from (None: start at round 1). Writes nothing."""
    ckpt = load(run_dir)
    rows = rundir.read_metrics(run_dir)
    if not cfg.resume:
        if ckpt is not None or rows:
            done = ckpt.round if ckpt is not None else max(r["round"] for r in rows)
            raise ResumeError(
                f"run dir '{run_dir}' already holds a run (rounds up to {done}). Set "
                "resume=true to continue it, or choose another run-dir."
            )
        return None
    if ckpt is None:
        return None
    changed = config_changes(ckpt.config, cfg)
    if changed:
        detail = ", ".join(
            f"{k}: {ckpt.config.get(k)!r} -> {cfg.to_run_config().get(k)!r}" for k in changed
        )
        raise ResumeError(
            f"cannot resume '{run_dir}': config keys differ from the checkpointed run "
            f"({detail}). Use the run's own values (see its config.toml), or start a new "
            f"run-dir. Only {', '.join(sorted(RESUMABLE_CHANGES))} may change."
        )
    return ckpt


def check_fingerprint(ckpt: Checkpoint, fingerprint: str, run_dir: Path) -> None:
    if ckpt.fingerprint != fingerprint:
        raise ResumeError(
            f"cannot resume '{run_dir}': its checkpoint was trained on backbone fingerprint "
            f"{ckpt.fingerprint[:16]}, this server loads {fingerprint[:16]}. Use the same "
            "backbone weights file and image size, or start a new run-dir."
        )


def rows_for_resume(run_dir: Path, last_round: int) -> list[dict[str, Any]]:
    """Keep one metrics row for each round up to ``last_round`` and drop the rest.

    When rows are dropped, the file as it was is kept beside it as
    ``metrics.jsonl.before-resume-<time>``.
    """
    rows = rundir.read_metrics(run_dir)
    kept: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["round"] <= last_round and row["round"] not in kept:
            kept[row["round"]] = row
    ordered = [kept[r] for r in sorted(kept)]
    if ordered != rows:
        path = Path(run_dir) / rundir.METRICS
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        shutil.copy2(path, path.with_name(f"{path.name}.before-resume-{stamp}"))
        rundir.rewrite_metrics(run_dir, ordered)
    return ordered


class Checkpointer:
    """A round callback that checkpoints the server after each round.

    Place it after the callback that appends the round to ``metrics.jsonl``.
    """

    def __init__(
        self,
        run_dir: Path,
        strategy: Strategy,
        cfg: FedgeConfig,
        fingerprint: str,
        wall_seconds: Callable[[], float],
    ) -> None:
        self.run_dir, self.strategy, self.cfg = run_dir, strategy, cfg
        self.fingerprint, self.wall_seconds = fingerprint, wall_seconds

    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None:
        save(
            self.run_dir,
            Checkpoint(
                round=report.round,
                arrays=from_record(arrays),
                strategy_class=type(self.strategy).__name__,
                strategy_state=strategy_state(self.strategy),
                rng=capture_rng(),
                config=self.cfg.to_run_config(),
                fingerprint=self.fingerprint,
                wall_seconds=float(self.wall_seconds()),
            ),
        )
