"""The run directory contract, written by the server and read by export/report.

::

    RUN_DIR/
      config.toml       resolved configuration
      metrics.jsonl     one JSON object per round
      summary.json      final figures of the run
      partitions.json   per-client label counts (simulation)
      model/
        head.safetensors    trainable parameters (what travels)
        model.safetensors   full model state_dict (backbone + head)
        model.json          labels, image size, normalization, backbone, fingerprint
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from fedge.config import FedgeConfig, read_config_file
from fedge.errors import FedgeError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
PARTITIONS = "partitions.json"
MODEL_DIR = "model"
HEAD_FILE = "head.safetensors"
FULL_MODEL_FILE = "model.safetensors"
MODEL_META = "model.json"


class RunDirError(FedgeError, ValueError):
    """A run directory that is missing or incomplete."""


def new_run_dir(cfg: FedgeConfig, base: str | Path = "runs") -> Path:
    """``cfg.run_dir`` if set, else ``runs/<timestamp>``; created, absolute."""
    if cfg.run_dir:
        path = Path(cfg.run_dir).expanduser()
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(base) / f"{stamp}-{cfg.strategy}"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, text: str) -> None:
    """Write a file so readers never see it half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    _atomic_write(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_config(run_dir: Path, cfg: FedgeConfig) -> None:
    _atomic_write(run_dir / CONFIG, tomli_w.dumps(cfg.to_run_config()))


def read_config(run_dir: Path) -> FedgeConfig:
    return FedgeConfig.from_mapping(read_config_file(_require(run_dir, CONFIG)), str(run_dir))


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def rewrite_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl with ``rows``, atomically."""
    text = "".join(json.dumps(row, default=_json_default) + "\n" for row in rows)
    _atomic_write(run_dir / METRICS, text)


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads(_require(run_dir, SUMMARY).read_text(encoding="utf-8"))


def _require(run_dir: Path, name: str) -> Path:
    path = Path(run_dir) / name
    if not path.exists():
        raise RunDirError(
            f"'{run_dir}' is not a complete fedge run directory: {name} is missing. "
            "Point at the folder `fedge simulate` printed as its run directory."
        )
    return path


def save_model(
    run_dir: Path,
    trainable: dict[str, np.ndarray],
    full_state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write ``model/``: the trained head, the full model and its metadata."""
    from safetensors.numpy import save_file

    model_dir = run_dir / MODEL_DIR
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in trainable.items()}, model_dir / HEAD_FILE)
    full = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in full_state.items()}
    save_file(full, model_dir / FULL_MODEL_FILE)
    write_json(model_dir / MODEL_META, meta)
    return model_dir


def read_model_meta(run_dir: Path) -> dict[str, Any]:
    return json.loads(_require(run_dir, f"{MODEL_DIR}/{MODEL_META}").read_text(encoding="utf-8"))
