"""Where fedge keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path

from fedge.config import FedgeConfig


def cache_dir(cfg: FedgeConfig) -> Path:
    """``cache-dir``, else ``$FEDGE_CACHE_DIR``, else ``~/.cache/fedge``."""
    raw = cfg.cache_dir or os.environ.get("FEDGE_CACHE_DIR") or "~/.cache/fedge"
    return Path(raw).expanduser().resolve()
