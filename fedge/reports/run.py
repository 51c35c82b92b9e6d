"""A run directory read back for reporting (see fedge/rundir.py for the contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedge import rundir
from fedge.config import read_config_file

EXPORT_REPORT = Path("export") / "report.json"
REPORT_DIR = "report"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _export_rows(data: Any) -> list[dict[str, Any]] | None:
    """Rows of export/report.json: a list of rows, or an object holding one."""
    if isinstance(data, dict):
        data = next((data[k] for k in ("rows", "artifacts", "results") if k in data), None)
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    return None


@dataclass(frozen=True)
class RunData:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    partitions: dict[str, Any] | None
    export_rows: list[dict[str, Any]] | None

    @classmethod
    def load(cls, path: str | Path) -> RunData:
        run = Path(path).expanduser().resolve()
        summary = rundir.read_summary(run)  # raises RunDirError naming the fix
        rows = rundir.read_metrics(run)
        if not rows:
            raise rundir.RunDirError(
                f"'{run}' has no rounds in {rundir.METRICS}: the run stopped before "
                "its first round ended, so there is nothing to report."
            )
        config_file = run / rundir.CONFIG
        config = read_config_file(config_file) if config_file.is_file() else {}
        return cls(
            path=run,
            config=config,
            rows=rows,
            summary=summary,
            partitions=_read_json(run / rundir.PARTITIONS),
            export_rows=_export_rows(_read_json(run / EXPORT_REPORT)),
        )

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def centralized(self) -> bool:
        """Whether `accuracy`/`loss` come from the server's held-out split."""
        return self.rows[-1].get("evaluation", "centralized") == "centralized"

    @property
    def confusion(self) -> list[list[int]] | None:
        return self.rows[-1].get("confusion") or self.summary.get("final_confusion")

    @property
    def classes(self) -> list[str]:
        for names in (self.summary.get("classes"), (self.partitions or {}).get("classes")):
            if names:
                return [str(n) for n in names]
        model_meta = self.path / rundir.MODEL_DIR / rundir.MODEL_META
        labels = (_read_json(model_meta) or {}).get("labels")
        if labels:
            return [str(n) for n in labels]
        k = len(self.rows[-1].get("per_class_recall") or [])
        return [str(i) for i in range(k)]

    @property
    def has_epsilon(self) -> bool:
        return any(r.get("epsilon") is not None for r in self.rows)

    def value(self, key: str, default: Any = None) -> Any:
        """A summary figure, else the config key (hyphenated) of the same name."""
        if self.summary.get(key) is not None:
            return self.summary[key]
        return self.config.get(key.replace("_", "-"), default)
