"""Run directories written by the server's own recorder from known round
outcomes, so report tests know every figure without running a federation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fedge import rundir
from fedge.config import FedgeConfig
from fedge.metrics import summarize_confusion
from server.reporting import RunDirRecorder
from server.rounds import RoundReport

CLASSES = ["cat", "dog", "frog"]
EXPORT_ROWS = [
    {
        "artifact": "model.onnx",
        "format": "onnx",
        "precision": "fp32",
        "size_bytes": 9_012_345,
        "max_abs_diff": 1.2e-5,
        "top1_agreement": 1.0,
        "accuracy": 0.8,
        "latency_ms": 3.21,
    },
    {
        "artifact": "model-int8.tflite",
        "format": "tflite",
        "precision": "int8",
        "size_bytes": 2_503_100,
        "max_abs_diff": 0.31,
        "top1_agreement": 0.975,
        "accuracy": 0.7833,
        "latency_ms": 1.7,
    },
]


def _confusion(rnd: int) -> np.ndarray:
    """A 3-class confusion matrix of 60 samples that gets better each round."""
    right = min(18, 8 + 3 * rnd)
    matrix = np.zeros((3, 3), dtype=np.int64)
    for t in range(3):
        wrong = 20 - right - t
        matrix[t, t] = right + t
        matrix[t, (t + 1) % 3] = wrong - wrong // 2
        matrix[t, (t + 2) % 3] = wrong // 2
    return matrix


def write_run_dir(
    path: Path,
    rounds: int = 4,
    *,
    strategy: str = "fedavg",
    epsilon: bool = False,
    export: bool = False,
    partitions: bool = True,
    seed: int = 0,
) -> Path:
    """A complete run directory of ``rounds`` rounds with 3 classes, 4 clients."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = FedgeConfig.from_mapping(
        {"strategy": strategy, "num-clients": 4, "num-rounds": rounds, "run-dir": str(path)}
    )
    rundir.write_config(path, cfg)
    recorder = RunDirRecorder(
        path,
        {
            "backbone": cfg.backbone,
            "fingerprint": "ab" * 32,
            "strategy": strategy,
            "num_clients": 4,
            "num_rounds": rounds,
            "classes": CLASSES,
            "trainable_parameters": 3 * 1280 + 3,
            "model_parameters": 2_227_715,
            "initial_accuracy": 0.3,
        },
    )
    for rnd in range(1, rounds + 1):
        confusion = _confusion(rnd + seed)
        central = {**summarize_confusion(confusion), "loss": 1.5 / rnd + 0.1 * seed}
        central["confusion"] = confusion.tolist()
        fed_confusion = confusion + np.eye(3, dtype=np.int64)
        fed = summarize_confusion(fed_confusion)
        recorder.on_round_end(
            RoundReport(
                round=rnd,
                num_sampled=4,
                num_clients=4 if rnd != 2 else 3,
                failures=[] if rnd != 2 else [(7, "no reply within 60s")],
                bytes_up=4 * 15_400 + rnd,
                bytes_down=8 * 15_400,
                seconds=20.0 if rnd == 1 else 0.5 + 0.01 * rnd,
                train={"train-loss": 1.0 / rnd, "train-accuracy": 0.5 + 0.1 * rnd},
                federated={
                    "accuracy": fed["accuracy"],
                    "loss": 1.6 / rnd,
                    "macro-f1": fed["macro_f1"],
                    "per-class-recall": fed["per_class_recall"],
                    "confusion": fed_confusion.tolist(),
                },
                centralized=central,
            ),
            arrays=None,  # type: ignore[arg-type]  # the recorder does not read them
        )
    recorder.write_summary()
    if epsilon:
        rows = rundir.read_metrics(path)
        (path / rundir.METRICS).write_text(
            "".join(json.dumps({**r, "epsilon": 0.8 * r["round"] ** 0.5}) + "\n" for r in rows)
        )
        summary = rundir.read_summary(path)
        rundir.write_json(path / rundir.SUMMARY, {**summary, "epsilon": 0.8 * rounds**0.5})
    if partitions:
        counts = [[30, 2, 0], [1, 25, 6], [10, 10, 10], [0, 3, 40]]
        rundir.write_json(
            path / rundir.PARTITIONS,
            {"classes": CLASSES, "train_label_counts": counts, "test_label_counts": counts},
        )
    if export:
        (path / "export").mkdir()
        rundir.write_json(path / "export" / "report.json", {"rows": EXPORT_ROWS})
    return path
