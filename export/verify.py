"""The parity report: every exported file run in its runtime(s) on held-out
images and compared with PyTorch's outputs; bars per precision.

Rows (``report.json`` -> ``rows``, one per artifact and runtime): ``artifact``,
``kind``, ``format``, ``precision``, ``runtime``, ``size_bytes``,
``max_abs_diff`` (logits, or embeddings for backbone files), ``top1_agreement``
with PyTorch and ``accuracy`` on the labels (backbone files: through the run's
head applied to their embeddings), ``latency_ms`` (median batch-1 CPU
latency), ``bar`` and ``passed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export import runtimes
from export.manifest import InputSpec

BARS = {"fp32": 0.995, "fp16": 0.99, "int8": 0.97}
TFLITE_RUNTIME_ENV = "FEDGE_TFLITE_RUNTIME_PYTHON"
# Where an edge environment with tflite_runtime (numpy < 2) is looked for.
TFLITE_RUNTIME_VENVS = (".venv-edge",)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Reference:
    """PyTorch's outputs on the held-out images, and what to compare with."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray
    head: Callable[[np.ndarray], np.ndarray]  # embeddings -> logits (the run's head)
    mean: Sequence[float]
    std: Sequence[float]


@dataclass(frozen=True)
class Job:
    """One exported file to verify."""

    path: Path
    kind: str  # "model" | "backbone"
    format: str
    precision: str
    spec: InputSpec


def compare(job: Job, ref: Reference, outputs: np.ndarray) -> dict[str, Any]:
    """Agreement figures of ``outputs`` (the file's, on ``ref.images``)."""
    expected = ref.logits if job.kind == "model" else ref.embeddings
    if outputs.shape != expected.shape:
        return {"error": f"output shape {outputs.shape}, expected {expected.shape}"}
    if not np.isfinite(outputs).all():
        return {"error": "non-finite outputs"}
    diff = np.abs(outputs - expected)
    row: dict[str, Any] = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }
    logits = outputs
    if job.kind == "backbone":
        norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(expected, axis=1)
        cos = (outputs * expected).sum(1) / np.maximum(norms, 1e-12)
        row["min_cosine"] = float(cos.min())
        logits = ref.head(outputs)
    predicted = logits.argmax(1)
    row["top1_agreement"] = float((predicted == ref.logits.argmax(1)).mean())
    row["accuracy"] = float((predicted == ref.labels).mean())
    return row


def judge(row: dict[str, Any]) -> dict[str, Any]:
    """Add ``bar`` and ``passed``: an error, or agreement below the bar, fails."""
    bar = BARS.get(row.get("precision", ""))
    row["bar"] = bar
    agreement = row.get("top1_agreement")
    row["passed"] = "error" not in row and (
        bar is None or (agreement is not None and agreement >= bar)
    )
    return row


def base_row(job: Job, runtime: str) -> dict[str, Any]:
    return {
        "artifact": job.path.name,
        "kind": job.kind,
        "format": job.format,
        "precision": job.precision,
        "runtime": runtime,
        "size_bytes": job.path.stat().st_size if job.path.is_file() else 0,
        "input": f"{job.spec.dtype} {job.spec.layout}",
    }


def verify_in_process(
    job: Job, ref: Reference, runtime: str, threads: int, latency_runs: int
) -> dict[str, Any]:
    """Run ``job`` here in ``runtime`` (onnxruntime or ai_edge_litert)."""
    row = base_row(job, runtime)
    try:
        runner = runtimes.open_runner(job.path, runtime, threads)
        row["runtime"] = runner.runtime
        x = runtimes.prepare_input(ref.images, job.spec.layout, job.spec.baked, ref.mean, ref.std)
        row.update(compare(job, ref, runner.run(x)))
        if "error" not in row:
            row["latency_ms"] = runner.latency_ms(x[:1], runs=latency_runs)
    except Exception as e:  # a broken file is a failing row, not a crash
        row["error"] = f"{type(e).__name__}: {e}"
    return judge(row)


# --- tflite_runtime, in its own environment ------------------------------------------


def tflite_runtime_python() -> str | None:
    """A Python that has ``tflite_runtime`` (it needs numpy < 2, so it lives in
    another environment): ``$FEDGE_TFLITE_RUNTIME_PYTHON``, else
    ``.venv-edge/bin/python`` in the repository, if it imports it."""
    candidates = [os.environ.get(TFLITE_RUNTIME_ENV, "")]
    candidates += [str(REPO / v / "bin" / "python") for v in TFLITE_RUNTIME_VENVS]
    if runtimes.runtime_available("tflite_runtime"):
        candidates.append(sys.executable)
    for python in candidates:
        if python and Path(python).exists() and _imports_tflite_runtime(python):
            return python
    return None


def _imports_tflite_runtime(python: str) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", "import tflite_runtime.interpreter"],
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def verify_in_tflite_runtime(
    python: str, jobs: Sequence[Job], ref: Reference, threads: int, latency_runs: int
) -> list[dict[str, Any]]:
    """Run the TFLite ``jobs`` with ``tflite_runtime`` in a subprocess of
    ``python`` (:func:`export.runtimes.worker`)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedge-tflrt-") as tmp:
        images = Path(tmp) / "images.npy"
        np.save(images, ref.images)
        request = {
            "runtime": "tflite_runtime",
            "threads": threads,
            "latency_runs": latency_runs,
            "images": str(images),
            "mean": list(ref.mean),
            "std": list(ref.std),
            "jobs": [
                {
                    "artifact": str(job.path),
                    "layout": job.spec.layout,
                    "baked": job.spec.baked,
                    "output": str(Path(tmp) / f"out-{i}.npy"),
                }
                for i, job in enumerate(jobs)
            ],
        }
        request_path = Path(tmp) / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        done = subprocess.run(
            [python, str(Path(runtimes.__file__)), str(request_path)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            error = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            for job in jobs:
                row = base_row(job, "tflite_runtime")
                row["error"] = f"tflite_runtime worker failed: {error[0]}"
                rows.append(judge(row))
            return rows
        reply = json.loads(lines[-1])
        for job, spec, result in zip(jobs, request["jobs"], reply["results"], strict=True):
            row = base_row(job, reply["runtime"])
            if "error" in result:
                row["error"] = result["error"]
            else:
                row.update(compare(job, ref, np.load(spec["output"])))
                row["latency_ms"] = result["latency_ms"]
            rows.append(judge(row))
    return rows


# --- the report ------------------------------------------------------------------


def failing(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r.get("passed", True)]


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _num(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


TABLE_COLUMNS = (
    "artifact",
    "runtime",
    "size",
    "max abs diff",
    "agreement",
    "bar",
    "accuracy",
    "latency ms",
    "ok",
)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The printed/Markdown table: one line per row of the report."""
    out = []
    for r in rows:
        ok = "yes" if r.get("passed", True) else "NO"
        if "error" in r:
            ok = f"NO: {r['error'][:80]}"
        out.append(
            [
                r["artifact"],
                r.get("runtime", ""),
                _mb(r.get("size_bytes", 0)) if r.get("size_bytes") else "",
                _num(r.get("max_abs_diff"), ".2e"),
                _num(r.get("top1_agreement"), ".4f"),
                _num(r.get("bar"), ".3f"),
                _num(r.get("accuracy"), ".4f"),
                _num(r.get("latency_ms"), ".2f"),
                ok,
            ]
        )
    return out


def text_table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [list(TABLE_COLUMNS), *table_rows(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " --- |" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table_rows(rows)]
    return "\n".join(lines)


def markdown_report(report: dict[str, Any]) -> str:
    """``report.md``: the table and how it was measured."""
    setup = report["setup"]
    lines = [
        f"# Export report: {report['run']}",
        "",
        markdown_table(report["rows"]),
        "",
        f"- Compared with PyTorch on {setup['evaluation_samples']} images of the server's "
        f"held-out split (labels for accuracy); agreement = same top-1 class as PyTorch. "
        "Backbone files: their embeddings through the run's head.",
        "- Bars (top-1 agreement): " + ", ".join(f"{k} >= {v}" for k, v in BARS.items()) + ".",
        f"- Latency: median of {setup['latency_runs']} batch-1 runs on the CPU, "
        f"{setup['threads']} thread(s), after 5 warm-up runs; {setup['host']}. "
        "Timings on a shared machine are noisy.",
        f"- int8: {setup.get('int8', 'n/a')}; calibration: {setup['calibration_source']} "
        f"({setup['calibration_samples']} images).",
    ]
    if setup.get("tflite_runtime"):
        lines.append(f"- tflite_runtime rows: {setup['tflite_runtime']}.")
    failed = failing(report["rows"])
    lines += [
        "",
        f"**{len(failed)} row(s) below their bar.**" if failed else "All rows meet their bars.",
    ]
    return "\n".join(lines) + "\n"
