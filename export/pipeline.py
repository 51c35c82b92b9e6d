"""``fedge export RUN_DIR``: the run's model -> ``RUN_DIR/export/``: ONNX and
TFLite files, ``manifest.json``, and the parity report (``report.json``,
``report.md``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.backbone import backbone_entry, backbone_facts, export_backbone
from export.manifest import (
    MANIFEST,
    ArtifactEntry,
    InputSpec,
    package_versions,
    read_json,
    write_json,
)
from export.onnx_export import export_onnx
from export.options import ExportError, ExportOptions
from export.prequant import prequantize
from export.quantize import to_fp16, to_int8
from export.runtimes import prepare_input
from export.samples import held_out
from export.tflite_export import export_tflite
from export.verify import (
    BARS,
    Job,
    Reference,
    failing,
    markdown_report,
    text_table,
    tflite_runtime_python,
    verify_in_process,
    verify_in_tflite_runtime,
)
from export.wrappers import sample_input, wrap
from fedge import rundir
from fedge.artifacts import file_sha256
from fedge.config import FedgeConfig
from fedge.errors import FedgeError
from fedge.models.backbones import build_backbone, preprocessing_for
from fedge.models.fingerprint import backbone_fingerprint, state_dict_sha256
from fedge.models.model import FedgeModel, LoadedBackbone, build_model
from fedge.models.preprocessing import Preprocessing

EXPORT_DIR = "export"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
OUTPUT_NAME = "logits"


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    report: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.report["rows"]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return failing(self.rows)

    @property
    def ok(self) -> bool:
        return not self.failures


# --- the run's model -------------------------------------------------------------


@dataclass(frozen=True)
class RunModel:
    cfg: FedgeConfig
    model: FedgeModel
    loaded: LoadedBackbone
    labels: list[str]
    meta: dict[str, Any]
    summary: dict[str, Any]


def load_run_model(run_dir: Path) -> RunModel:
    """The full model of a run (backbone + trained head) from ``model/``.

    The architecture comes from ``config.toml``; every weight from
    ``model.safetensors`` (the backbone's weights file is not needed)."""
    from safetensors.torch import load_file

    cfg = rundir.read_config(run_dir)
    meta = rundir.read_model_meta(run_dir)
    weights_file = run_dir / rundir.MODEL_DIR / rundir.FULL_MODEL_FILE
    if not weights_file.is_file():
        raise ExportError(f"{weights_file} is missing: the run did not finish its last round.")
    labels = list(meta["labels"])
    pre = preprocessing_for(cfg.backbone, cfg.image_size)
    skeleton = LoadedBackbone(
        cfg.backbone, cfg.weights, pre, "", build_backbone(cfg.backbone, "none", cfg.seed)
    )
    model = build_model(cfg, len(labels), skeleton)
    try:
        model.load_state_dict(load_file(str(weights_file)), strict=True)
    except RuntimeError as e:
        raise ExportError(f"{weights_file} does not fit the run's config: {e}") from e
    model.eval()
    weights_sha = state_dict_sha256(model.backbone.state_dict())
    fingerprint = backbone_fingerprint(cfg.backbone, weights_sha, pre)
    loaded = LoadedBackbone(cfg.backbone, cfg.weights, pre, fingerprint, model.backbone)
    summary_path = run_dir / rundir.SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return RunModel(cfg, model, loaded, labels, meta, summary)


def run_facts(run_dir: Path, rm: RunModel) -> dict[str, Any]:
    """Where the model came from: the run and its headline figures."""
    facts: dict[str, Any] = {"run_dir": str(run_dir.resolve()), "name": run_dir.name}
    keys = ("final_accuracy", "rounds", "strategy", "num_clients", "dp", "epsilon", "dp_delta")
    for key in keys:
        if key in rm.summary:
            facts[key] = rm.summary[key]
    if rm.meta.get("fingerprint") and rm.meta["fingerprint"] != rm.loaded.fingerprint:
        # unfreeze-last > 0: the exported backbone is the fine-tuned one
        facts["training_fingerprint"] = rm.meta["fingerprint"]
    return facts


# --- export ----------------------------------------------------------------------


def _model_entry(
    name: str, fmt: str, precision: str, spec: InputSpec, size: int, n: int
) -> ArtifactEntry:
    batch: int | str = "batch" if fmt == "onnx" else 1
    return ArtifactEntry(
        file=name,
        kind="model",
        format=fmt,
        precision=precision,
        input={**spec.to_dict(size), "name": "input", "shape": spec.shape(size, batch)},
        output={"name": OUTPUT_NAME, "dtype": "float32", "shape": [batch, n], "meaning": "logits"},
    )


def artifact_name(fmt: str, precision: str) -> str:
    return f"model.{fmt}" if precision == "fp32" else f"model-{precision}.{fmt}"


def _say(printer: Callable[[str], None] | None, line: str) -> None:
    if printer is not None:
        printer(line)


def export_run(
    run_dir: str | Path,
    options: ExportOptions | None = None,
    out_dir: str | Path | None = None,
    printer: Callable[[str], None] | None = print,
) -> ExportResult:
    """Export, verify and describe the model of ``run_dir``."""
    options = options or ExportOptions()
    run_dir = Path(run_dir).resolve()
    out = Path(out_dir) if out_dir else run_dir / EXPORT_DIR
    rm = load_run_model(run_dir)
    cfg = rm.cfg if options.data_path is None else rm.cfg.replace({"data-path": options.data_path})
    pre, spec = rm.loaded.preprocessing, options.spec
    try:
        data = held_out(cfg, pre, options.eval_samples, options.calibration_samples)
    except FedgeError as e:
        raise ExportError(
            f"verification needs the run's held-out data ({cfg.dataset} at "
            f"'{cfg.data_path}'): {e} Give its new place with --data-path."
        ) from e
    if not len(data.images):
        raise ExportError("the run's held-out split has no readable images to verify on.")

    out.mkdir(parents=True, exist_ok=True)
    facts = {
        "format_version": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "labels": rm.labels,
        "num_classes": len(rm.labels),
        **backbone_facts(rm.loaded),
        "head": rm.cfg.head,
        "run": run_facts(run_dir, rm),
        "versions": package_versions(),
    }
    del facts["kind"]
    entries: list[ArtifactEntry] = []
    timings: dict[str, float] = {}
    wrapped = wrap(rm.model, spec, pre)
    size, n = pre.image_size, len(rm.labels)

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        _say(printer, f"export: {name} ...")
        start = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - start, 1)
        return result

    if "onnx" in options.formats:
        entry = _model_entry("model.onnx", "onnx", "fp32", spec, size, n)
        meta = {
            **facts,
            **{k: v for k, v in entry.to_dict().items() if k not in ("size_bytes", "sha256")},
        }
        timed(
            entry.file,
            lambda: export_onnx(
                wrapped, sample_input(spec, pre, 2), out / entry.file, OUTPUT_NAME, meta
            ),
        )
        entries.append(entry)
    if "tflite" in options.formats:
        entries += _export_tflite(rm.model, out, options, pre, data.calibration, n, timed)
    if options.backbone:
        written = timed(
            "backbone",
            lambda: export_backbone(rm.loaded, out, options.formats, {"run": facts["run"]}),
        )
        dim = rm.loaded.module.embedding_dim
        entries += [backbone_entry(p.name, fmt, size, dim) for fmt, p in written.items()]

    for entry in entries:
        path = out / entry.file
        entry.size_bytes, entry.sha256 = path.stat().st_size, file_sha256(path)
    manifest = {**facts, "artifacts": {e.file: e.to_dict() for e in entries}}
    write_json(out / MANIFEST, manifest)
    report = verify_export(out, manifest, rm, data, options, printer)
    report["setup"]["export_seconds"] = timings
    report["setup"].update(data.describe())
    _write_report(out, report)
    return ExportResult(out, manifest, report)


def _export_tflite(
    model: torch.nn.Module,
    out: Path,
    options: ExportOptions,
    pre: Preprocessing,
    calibration: np.ndarray,
    n: int,
    timed: Callable[[str, Callable[[], Any]], Any],
) -> list[ArtifactEntry]:
    """model.tflite, then model-fp16/-int8.tflite quantized from it (the fp32
    file is made in a temporary folder when fp32 is not asked for)."""
    spec, size = options.spec, pre.image_size
    entries = []
    with tempfile.TemporaryDirectory(prefix="fedge-export-") as tmp:
        keep = "fp32" in options.precisions
        fp32 = (out if keep else Path(tmp)) / "model.tflite"
        timed(
            "model.tflite",
            lambda: export_tflite(wrap(model, spec, pre), sample_input(spec, pre), fp32),
        )
        if keep:
            entries.append(_model_entry("model.tflite", "tflite", "fp32", spec, size, n))
        if "fp16" in options.precisions:
            entry = _model_entry("model-fp16.tflite", "tflite", "fp16", spec, size, n)
            timed(entry.file, lambda: to_fp16(fp32, out / entry.file))
            entry.quantization = {"method": "ai-edge-quantizer: float16 weights (FLOAT_CASTING)"}
            entries.append(entry)
        if "int8" in options.precisions:
            entry = _model_entry("model-int8.tflite", "tflite", "int8", spec, size, n)
            details = timed(
                entry.file,
                lambda: _int8(model, fp32, Path(tmp), out / entry.file, options, pre, calibration),
            )
            entry.quantization = {
                "method": "ai-edge-quantizer post-training quantization",
                "description": options.int8.describe(),
                **details,
            }
            entries.append(entry)
    return entries


def _int8(
    model: torch.nn.Module,
    fp32: Path,
    tmp: Path,
    dst: Path,
    options: ExportOptions,
    pre: Preprocessing,
    calibration: np.ndarray,
) -> dict[str, Any]:
    """model-int8.tflite: with bias correction, from a float model whose weights
    are already on the int8 grid (export/prequant.py), else from ``fp32``."""
    settings, spec = options.int8, options.spec
    details: dict[str, Any] = {}
    source = fp32
    if settings.bias_correction:
        images = calibration[: options.bias_correction_samples]
        inputs = torch.from_numpy(prepare_input(images, "nchw", False, pre.mean, pre.std))
        keep = settings.float_convs if settings.mode == "full" else 0
        rounded, stats = prequantize(model, inputs, keep_float=keep)
        source = tmp / "model-prequantized.tflite"
        export_tflite(wrap(rounded, spec, pre), sample_input(spec, pre), source)
        details.update(stats.to_dict())
    calib = None
    if settings.needs_calibration:
        calib = prepare_input(calibration, spec.layout, spec.baked, pre.mean, pre.std)
    details.update(to_int8(source, dst, settings, calib))
    return details


# --- verification ----------------------------------------------------------------


@torch.no_grad()
def reference(rm: RunModel, images: np.ndarray, labels: np.ndarray) -> Reference:
    """PyTorch's embeddings and logits on ``images`` (batches of 50)."""
    pre = rm.loaded.preprocessing
    x = prepare_input(images, "nchw", False, pre.mean, pre.std)
    z = np.concatenate(
        [rm.model.backbone(torch.from_numpy(x[i : i + 50])).numpy() for i in range(0, len(x), 50)]
    )

    def head(emb: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return rm.model.head(torch.from_numpy(np.ascontiguousarray(emb, np.float32))).numpy()

    return Reference(images, labels, head(z), z, head, pre.mean, pre.std)


@torch.no_grad()
def _torch_row(
    rm: RunModel, ref: Reference, run_dir: Path, options: ExportOptions
) -> dict[str, Any]:
    from export.runtimes import _median_ms

    x1 = torch.from_numpy(prepare_input(ref.images[:1], "nchw", False, ref.mean, ref.std))
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        latency = _median_ms(lambda: rm.model(x1), options.latency_runs, 5)
    finally:
        torch.set_num_threads(threads)
    weights = run_dir / rundir.MODEL_DIR / rundir.FULL_MODEL_FILE
    return {
        "artifact": "PyTorch (reference)",
        "kind": "model",
        "format": "pytorch",
        "precision": "fp32",
        "runtime": f"torch {torch.__version__}",
        "size_bytes": weights.stat().st_size if weights.is_file() else 0,
        "input": "float32 nchw",
        "max_abs_diff": 0.0,
        "top1_agreement": 1.0,
        "accuracy": float((ref.logits.argmax(1) == ref.labels).mean()),
        "latency_ms": latency,
        "bar": None,
        "passed": True,
    }


def _jobs(out: Path, manifest: dict[str, Any]) -> tuple[list[Job], dict[str, str]]:
    """The manifest's files, and the ones whose bytes changed since it was written."""
    jobs, changed = [], {}
    for name, entry in manifest["artifacts"].items():
        path = out / name
        jobs.append(
            Job(
                path,
                entry["kind"],
                entry["format"],
                entry["precision"],
                InputSpec.from_dict(entry["input"]),
            )
        )
        if not path.is_file():
            changed[name] = "file is missing"
        elif entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            changed[name] = "sha256 differs from manifest.json (the file changed after export)"
    return jobs, changed


def verify_export(
    out: Path,
    manifest: dict[str, Any],
    rm: RunModel,
    data: Any,
    options: ExportOptions,
    printer: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run every file of ``manifest`` and build the report (rows + setup)."""
    _say(
        printer,
        f"verify: {len(manifest['artifacts'])} files on {len(data.images)} held-out images ...",
    )
    ref = reference(rm, data.images, data.labels)
    run_dir = Path(manifest["run"]["run_dir"])
    rows = [_torch_row(rm, ref, run_dir, options)]
    jobs, changed = _jobs(out, manifest)
    for job in jobs:
        runtime = "onnxruntime" if job.format == "onnx" else "ai_edge_litert"
        row = verify_in_process(job, ref, runtime, options.threads, options.latency_runs)
        if job.path.name in changed:
            row["error"] = changed[job.path.name] + ("; " + row["error"] if "error" in row else "")
            row["passed"] = False
        rows.append(row)
    python = tflite_runtime_python() if options.tflite_runtime else None
    tflite_jobs = [j for j in jobs if j.format == "tflite" and j.path.is_file()]
    tflrt = None
    if python and tflite_jobs:
        _say(printer, f"verify: the TFLite files again with tflite_runtime ({python}) ...")
        tflrt_rows = verify_in_tflite_runtime(
            python, tflite_jobs, ref, options.threads, options.latency_runs
        )
        rows += tflrt_rows
        tflrt = f"run by {tflrt_rows[0]['runtime']} in {python}"
    int8 = manifest["artifacts"].get("model-int8.tflite", {}).get("quantization", {})
    report = {
        "run": manifest["run"]["run_dir"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "passed": not failing(rows),
        "failures": [f"{r['artifact']} ({r['runtime']})" for r in failing(rows)],
        "rows": rows,
        "setup": {
            "evaluation_samples": len(data.images),
            "latency_runs": options.latency_runs,
            "threads": options.threads,
            "host": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()}",
            "bars": dict(BARS),
            "int8": int8.get("description", "n/a"),
            "tflite_runtime": tflrt
            or ("not found (set FEDGE_TFLITE_RUNTIME_PYTHON)" if options.tflite_runtime else "off"),
            "versions": manifest.get("versions", {}),
        },
    }
    return report


def _write_report(out: Path, report: dict[str, Any]) -> None:
    write_json(out / REPORT_JSON, report)
    (out / REPORT_MD).write_text(markdown_report(report), encoding="utf-8")


def verify_only(
    run_dir: str | Path,
    options: ExportOptions | None = None,
    out_dir: str | Path | None = None,
    printer: Callable[[str], None] | None = print,
) -> ExportResult:
    """Verify the files ``manifest.json`` lists again (after copying them, say):
    hashes, outputs against PyTorch, bars. Rewrites the report."""
    options = options or ExportOptions()
    run_dir = Path(run_dir).resolve()
    out = Path(out_dir) if out_dir else run_dir / EXPORT_DIR
    if not (out / MANIFEST).is_file():
        raise ExportError(f"{out / MANIFEST} is missing: run `fedge export {run_dir}` first.")
    manifest = read_json(out / MANIFEST)
    rm = load_run_model(run_dir)
    cfg = rm.cfg if options.data_path is None else rm.cfg.replace({"data-path": options.data_path})
    data = held_out(cfg, rm.loaded.preprocessing, options.eval_samples, 0)
    report = verify_export(out, manifest, rm, data, options, printer)
    report["setup"].update(data.describe())
    _write_report(out, report)
    return ExportResult(out, manifest, report)


def summary_lines(result: ExportResult) -> list[str]:
    """What ``fedge export`` prints at the end."""
    lines = [
        text_table(result.rows),
        "",
        f"written to {result.out_dir}/ (manifest.json, report.md)",
    ]
    if result.failures:
        lines.append(f"{len(result.failures)} row(s) below their bar or broken:")
        lines += [f"  {f}" for f in result.report["failures"]]
    return lines
