"""Several runs side by side: accuracy per round and a table of final figures."""

from __future__ import annotations

from collections import Counter

from fedge.reports import plots
from fedge.reports.content import final_epsilon, fmt
from fedge.reports.document import Document, Image, Section, Table
from fedge.reports.run import RunData

COLUMNS = [
    "run",
    "strategy",
    "rounds",
    "final accuracy",
    "best accuracy",
    "best round",
    "bytes up per client round",
    "wall seconds",
]


def run_labels(runs: list[RunData]) -> list[str]:
    """Each run's folder name, with its parent's where names repeat."""
    names = Counter(r.name for r in runs)
    return [r.name if names[r.name] == 1 else f"{r.path.parent.name}/{r.name}" for r in runs]


def compare_table(runs: list[RunData]) -> Table:
    with_eps = any(r.has_epsilon for r in runs)
    rows = []
    for label, run in zip(run_labels(runs), runs, strict=True):
        s = run.summary
        row = [
            label,
            str(run.value("strategy", "n/a")),
            fmt(s.get("rounds")),
            fmt(s.get("final_accuracy")),
            fmt(s.get("best_accuracy")),
            fmt(s.get("best_round")),
            fmt(
                round(s["bytes_up_per_client_round"]) if "bytes_up_per_client_round" in s else None
            ),
            fmt(s.get("wall_seconds"), 1),
        ]
        if with_eps:
            row.append(fmt(s.get("epsilon", final_epsilon(run)), 3))
        rows.append(row)
    headers = COLUMNS + (["epsilon"] if with_eps else [])
    return Table("runs", headers, rows, "accuracy: as in each run's metrics.jsonl")


def compare_document(runs: list[RunData]) -> Document:
    labels = run_labels(runs)
    png = plots.compare_figure(list(zip(labels, (r.rows for r in runs), strict=True)))
    lead = f"{len(runs)} runs: " + ", ".join(
        f"{lbl} ({r.path})" for lbl, r in zip(labels, runs, strict=True)
    )
    return Document(
        "fedge run comparison",
        lead,
        [
            Section(
                "Accuracy per round",
                "accuracy",
                [Image("compare_accuracy", png, "accuracy per round, one line per run")],
            ),
            Section("Runs", "runs", [compare_table(runs)]),
        ],
    )
