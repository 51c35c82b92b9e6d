"""Round callbacks that record a run: metrics.jsonl, summary.json, console lines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

from fedge import rundir
from server.rounds import RoundReport


def metrics_row(report: RoundReport) -> dict[str, Any]:
    """The metrics.jsonl object of a round (centralized figures when the server
    has held-out data, else the clients' federated figures)."""
    central, fed = report.centralized, report.federated or {}
    headline: dict[str, Any] = {}
    if central is not None:
        headline = {
            "accuracy": central["accuracy"],
            "loss": central["loss"],
            "macro_f1": central["macro_f1"],
            "per_class_recall": central["per_class_recall"],
            "confusion": central.get("confusion"),
            "evaluation": "centralized",
        }
    elif fed:
        headline = {
            "accuracy": fed["accuracy"],
            "loss": fed["loss"],
            "macro_f1": fed["macro-f1"],
            "per_class_recall": fed["per-class-recall"],
            "confusion": fed.get("confusion"),
            "evaluation": "federated",
        }
    return {
        "round": report.round,
        **headline,
        "federated_accuracy": fed.get("accuracy"),
        "federated_loss": fed.get("loss"),
        "federated_macro_f1": fed.get("macro-f1"),
        "federated_per_class_recall": fed.get("per-class-recall"),
        "train_loss": report.train.get("train-loss"),
        "train_accuracy": report.train.get("train-accuracy"),
        "skipped_files": report.train.get("skipped-files", 0),
        "num_clients": report.num_clients,
        "num_sampled": report.num_sampled,
        "num_failures": len(report.failures),
        "failures": [{"node_id": n, "reason": r} for n, r in report.failures],
        "bytes_up": report.bytes_up,
        "bytes_down": report.bytes_down,
        "backbone_bytes_down": report.backbone_bytes_down,
        "seconds": report.seconds,
        **report.extra,
    }


class RunDirRecorder:
    """Appends each round to metrics.jsonl and keeps summary.json current."""

    def __init__(self, run_dir: Path, base_summary: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.base = base_summary
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []

    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None:
        row = metrics_row(report)
        self.rows.append(row)
        rundir.append_metrics(self.run_dir, row)
        self.write_summary()

    def summary(self) -> dict[str, Any]:
        rows = self.rows
        accs = [r["accuracy"] for r in rows if r.get("accuracy") is not None]
        client_rounds = sum(r["num_clients"] for r in rows)
        sampled_rounds = sum(r["num_sampled"] for r in rows)
        return {
            **self.base,
            "final_accuracy": accs[-1] if accs else None,
            "best_accuracy": max(accs) if accs else None,
            "best_round": rows[accs.index(max(accs))]["round"] if accs else None,
            "final_macro_f1": rows[-1].get("macro_f1") if rows else None,
            "final_confusion": rows[-1].get("confusion") if rows else None,
            "rounds": len(rows),
            "wall_seconds": time.perf_counter() - self.started,
            "seconds_per_round": sum(r["seconds"] for r in rows) / len(rows) if rows else None,
            "bytes_up_per_client_round": (
                sum(r["bytes_up"] for r in rows) / client_rounds if client_rounds else 0
            ),
            "bytes_down_per_client_round": (
                sum(r["bytes_down"] for r in rows) / sampled_rounds if sampled_rounds else 0
            ),
            "bytes_up_total": sum(r["bytes_up"] for r in rows),
            "bytes_down_total": sum(r["bytes_down"] for r in rows),
            "client_failures": sum(r["num_failures"] for r in rows),
        }

    def write_summary(self, **extra: Any) -> dict[str, Any]:
        data = {**self.summary(), **extra}
        rundir.write_json(self.run_dir / rundir.SUMMARY, data)
        return data


def human_bytes(n: float) -> str:
    """``515.0 KB``, ``1.03 MB``: bytes as people read them."""
    return f"{n / 1000:.1f} KB" if n < 1e6 else f"{n / 1e6:.2f} MB"


def _fixed(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def round_cells(row: dict[str, Any], num_rounds: int) -> dict[str, str]:
    """A metrics row as short strings, by column name (for lines and tables)."""
    cells = {
        "round": f"{row['round']}/{num_rounds}",
        "clients": f"{row['num_clients']}/{row['num_sampled']}",
        "accuracy": _fixed(row.get("accuracy")),
        "loss": _fixed(row.get("loss")),
        "macro-F1": _fixed(row.get("macro_f1")),
        "bytes up": human_bytes(row["bytes_up"]),
        "bytes down": human_bytes(row["bytes_down"]),
        "seconds": f"{row['seconds']:.1f}",
    }
    if row.get("epsilon") is not None:
        cells["epsilon"] = f"{row['epsilon']:.2f}"
    return cells


def round_line(row: dict[str, Any], num_rounds: int) -> str:
    """One line per round for humans."""
    c = round_cells(row, num_rounds)
    line = (
        f"round {row['round']:>3}/{num_rounds} | clients {c['clients']} | acc {c['accuracy']} | "
        f"loss {c['loss']} | f1 {c['macro-F1']} | up {c['bytes up']} | "
        f"down {c['bytes down']} | {c['seconds']}s"
    )
    return line + (f" | eps {c['epsilon']}" if "epsilon" in c else "")


class ConsoleReporter:
    """Prints the one-line summary of each round."""

    def __init__(self, num_rounds: int, printer: Any = print) -> None:
        self.num_rounds = num_rounds
        self.printer = printer

    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None:
        self.printer(round_line(metrics_row(report), self.num_rounds))
