"""What the privacy and robustness benchmarks share: run a `fedge simulate`
process per setting, read its run directory, print Markdown, write JSON."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedge import rundir


def make_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the acceptance job for every run (data-path, weights, ...)",
    )
    parser.add_argument("--out", default=default_out, help="output folder")
    return parser


def overrides_of(args: argparse.Namespace) -> dict[str, str]:
    return dict(item.split("=", 1) for item in args.set)


def simulate(name: str, values: dict[str, Any], out: Path) -> dict[str, Any]:
    """One `fedge simulate` process (its own Ray); returns its summary and rows."""
    run_dir = out / name
    cmd = [sys.executable, "-m", "fedge.cli.main", "simulate", "--run-dir", str(run_dir)]
    cmd += ["--set", *(f"{k}={v}" for k, v in values.items())]
    print(f"[{name}] fedge simulate ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    summary = rundir.read_summary(run_dir)
    return {
        "name": name,
        "values": values,
        "process_seconds": time.perf_counter() - start,
        "summary": summary,
        "rows": rundir.read_metrics(run_dir),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(out: Path, result: dict[str, Any]) -> Path:
    path = out / "result.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path
