"""``export = true``: the export as the last step of a run.

The run directory is complete (model, summary) before the export starts, and
nothing here raises: an export that fails or misses a bar is reported (log
lines, ``RUN_DIR/export/error.txt``) and can be redone with
``fedge export RUN_DIR``; the run itself stays a success.
"""

from __future__ import annotations

import importlib.util
import json
import traceback
from collections.abc import Callable
from pathlib import Path

from fedge.errors import FedgeError

EXPORT_DIR = "export"
ERROR_FILE = "error.txt"
REPORT_FILE = "report.json"
_MODULES = (
    "onnx",
    "onnxscript",
    "onnxruntime",
    "litert_torch",
    "ai_edge_litert",
    "ai_edge_quantizer",
)


class ExportUnavailable(FedgeError, RuntimeError):
    """``export = true`` without the export packages installed."""


def require_export_dependencies() -> None:
    """Fail before a run starts when ``export = true`` cannot work."""
    missing = [m for m in _MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportUnavailable(
            f"export = true needs {', '.join(missing)}: install the export extra in one pip "
            'command with the rest, pip install -e ".[dev,export]" (see README, "Export to '
            'ONNX and TFLite"), or set export = false.'
        )


def export_after_run(
    run_dir: Path, say: Callable[[str], None], warn: Callable[[str], None]
) -> bool:
    """Export ``run_dir``'s model; ``say`` gets progress and the table,
    ``warn`` failures. True when every file meets its bar."""
    out = Path(run_dir) / EXPORT_DIR
    error_file = out / ERROR_FILE
    error_file.unlink(missing_ok=True)
    try:
        from export.pipeline import export_run, summary_lines

        result = export_run(run_dir, printer=say)
    except Exception as e:  # the run is done and saved: report, never lose it
        out.mkdir(parents=True, exist_ok=True)
        detail = "".join(traceback.format_exception(e))
        error_file.write_text(
            f"export after the run failed: {e}\nredo it with: fedge export {run_dir}\n\n{detail}",
            encoding="utf-8",
        )
        warn(
            f"export failed: {type(e).__name__}: {e}. The run directory {run_dir} is complete; "
            f"details in {error_file}; redo with `fedge export {run_dir}`."
        )
        return False
    for line in summary_lines(result):
        say(line)
    if not result.ok:
        warn(f"exported files below their bar: {', '.join(result.report['failures'])}")
    return result.ok


def export_outcome(run_dir: Path) -> list[str]:
    """Lines that tell how the export of a finished run went (torch-free)."""
    out = Path(run_dir) / EXPORT_DIR
    if (out / ERROR_FILE).is_file():
        first = (out / ERROR_FILE).read_text(encoding="utf-8").splitlines()[:2]
        return [f"export: FAILED ({first[0]})", *first[1:]]
    if not (out / REPORT_FILE).is_file():
        return [f"export: no report in {out}"]
    from export.verify import text_table

    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    lines = [f"export: {out}/", text_table(report["rows"])]
    if report.get("failures"):
        lines.append("below their bar: " + ", ".join(report["failures"]))
    return lines
