"""What a run report says: the sections, tables and plots of one run directory."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedge.reports import plots
from fedge.reports.document import Document, Image, Paragraph, Section, Table
from fedge.reports.run import EXPORT_REPORT, RunData

EXPORT_COLUMNS = (
    "format",
    "precision",
    "size_bytes",
    "max_abs_diff",
    "top1_agreement",
    "accuracy",
    "latency_ms",
    "bar",
    "passed",
)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers as the report shows them: floats to ``digits`` places, integers
    with thousands separators, missing values as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if 0 < abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def _bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    return f"{n:,.0f} B ({n / 1000:,.1f} KB)"


def final_epsilon(run: RunData) -> float | None:
    return next((r["epsilon"] for r in reversed(run.rows) if r.get("epsilon") is not None), None)


def summary_section(run: RunData) -> Section:
    s = run.summary
    best = f"{fmt(s.get('best_accuracy'))} (round {s.get('best_round', 'n/a')})"
    partitioner = str(run.value("partitioner", "n/a"))
    if partitioner == "dirichlet":
        partitioner += f" (alpha {run.value('dirichlet_alpha')})"
    rows = [
        ["final accuracy", fmt(s.get("final_accuracy"))],
        ["best accuracy", best],
        ["accuracy before training", fmt(s.get("initial_accuracy"))],
        ["final macro-F1", fmt(s.get("final_macro_f1"))],
        ["rounds", fmt(s.get("rounds"))],
        ["wall time", f"{fmt(s.get('wall_seconds'), 1)} s"],
        ["bytes up per client round", _bytes(s.get("bytes_up_per_client_round"))],
        ["bytes down per client round", _bytes(s.get("bytes_down_per_client_round"))],
        ["client failures", fmt(s.get("client_failures", 0))],
        ["strategy", str(run.value("strategy", "n/a"))],
        ["backbone", f"{run.value('backbone', 'n/a')} ({run.value('head', 'n/a')} head)"],
        ["dataset", f"{run.value('dataset', 'n/a')} {run.value('data_path', '')}".strip()],
        ["partitioner", partitioner],
        ["clients", fmt(run.value("num_clients"))],
        ["backbone fingerprint", str(s.get("fingerprint", "n/a"))],
    ]
    epsilon = s.get("epsilon", final_epsilon(run))
    if epsilon is not None:
        rows.insert(4, ["privacy spent (epsilon)", fmt(epsilon, 3)])
    table = Table("summary", ["figure", "value"], rows, numeric=False)
    return Section("Summary", "summary", [table])


def round_table(run: RunData) -> Table:
    headers = [
        "round",
        "accuracy",
        "loss",
        "macro-F1",
        "fed. accuracy",
        "fed. loss",
        "train loss",
        "clients",
        "bytes up",
        "bytes down",
        "seconds",
    ]
    eps = run.has_epsilon
    if eps:
        headers.append("epsilon")
    rows = []
    for r in run.rows:
        row = [
            str(r["round"]),
            fmt(r.get("accuracy")),
            fmt(r.get("loss")),
            fmt(r.get("macro_f1")),
            fmt(r.get("federated_accuracy")),
            fmt(r.get("federated_loss")),
            fmt(r.get("train_loss")),
            f"{r['num_clients']}/{r['num_sampled']}",
            fmt(int(r["bytes_up"])),
            fmt(int(r["bytes_down"])),
            fmt(float(r["seconds"]), 2),
        ]
        if eps:
            row.append(fmt(r.get("epsilon"), 3))
        rows.append(row)
    where = "the server's held-out split" if run.centralized else "the clients' local test splits"
    caption = (
        f"accuracy, loss, macro-F1: {where}; fed.: clients' local test splits; "
        "bytes: trainable parameters sent, all clients. In the plot, round 0 is the "
        "untrained head."
    )
    return Table("rounds", headers, rows, caption)


def rounds_section(run: RunData) -> Section:
    png = plots.accuracy_loss_figure(run.rows, run.centralized, run.summary.get("initial_accuracy"))
    return Section(
        "Accuracy and loss per round",
        "per-round",
        [
            Image("accuracy_loss", png, "accuracy and loss per round"),
            round_table(run),
        ],
    )


def partition_section(run: RunData) -> Section:
    section = Section("Clients' label distribution", "partitions")
    counts = (run.partitions or {}).get("train_label_counts")
    if not counts:
        section.blocks.append(
            Paragraph("No partitions.json in the run directory (not a simulation).")
        )
        return section
    classes = run.partitions.get("classes") or run.classes  # type: ignore[union-attr]
    totals = np.asarray(counts).sum(axis=1)
    section.blocks += [
        Image(
            "label_distribution",
            plots.label_distribution_figure(counts, classes),
            "training samples per client and class",
        ),
        Paragraph(
            f"{len(counts)} clients; training samples per client: min {int(totals.min())}, "
            f"median {int(np.median(totals))}, max {int(totals.max())}; "
            f"{int(totals.sum())} in all."
        ),
    ]
    return section


def evaluation_section(run: RunData) -> Section:
    last = run.rows[-1]
    where = "held-out split" if run.centralized else "clients' local test splits"
    section = Section(f"Per-class recall and confusion matrix ({where})", "classes")
    classes = run.classes
    recall = last.get("per_class_recall")
    if recall:
        section.blocks.append(
            Image("per_class_recall", plots.recall_figure(recall, classes), "per-class recall")
        )
    confusion = run.confusion
    if confusion is None:
        section.blocks.append(
            Paragraph("metrics.jsonl holds no confusion matrix (the run predates it).")
        )
    else:
        matrix = np.asarray(confusion)
        section.blocks.append(
            Image("confusion_matrix", plots.confusion_figure(matrix, classes), "confusion matrix")
        )
    rows = []
    for i, name in enumerate(classes):
        row = [name, fmt(recall[i]) if recall else "n/a"]
        if confusion is not None:
            row += [fmt(int(matrix[i].sum())), fmt(int(matrix[:, i].sum()))]
        rows.append(row)
    headers = ["class", "recall"] + (["samples", "predicted"] if confusion is not None else [])
    section.blocks.append(
        Table("per-class", headers, rows, f"after round {last['round']} (the final model)")
    )
    return section


def communication_section(run: RunData) -> Section:
    up = sum(r["bytes_up"] for r in run.rows)
    down = sum(r["bytes_down"] for r in run.rows)
    return Section(
        "Bytes per round",
        "bytes",
        [
            Image("bytes_per_round", plots.bytes_figure(run.rows), "bytes per round"),
            Paragraph(
                f"In all: {_bytes(up)} up, {_bytes(down)} down. Only the trainable "
                f"parameters travel ({fmt(run.summary.get('trainable_parameters'))} of "
                f"{fmt(run.summary.get('model_parameters'))})."
            ),
        ],
    )


def privacy_section(run: RunData) -> Section:
    delta = run.value("dp_delta")
    mode = run.value("dp", "on")
    text = f"Differential privacy: {mode}"
    if delta:
        text += f", delta = {delta:g}"
    return Section(
        "Privacy spent",
        "privacy",
        [
            Image("epsilon", plots.epsilon_figure(run.rows, delta), "privacy spent (epsilon)"),
            Paragraph(text + ". Epsilon per round is in the table above."),
        ],
    )


def export_section(run: RunData) -> Section:
    rows = run.export_rows or []
    extra = [k for k in rows[0] if k not in EXPORT_COLUMNS and not isinstance(rows[0][k], dict)]
    names = [k for k in ("artifact", "file", "path") if k in extra][:1]
    names += [k for k in ("runtime",) if k in extra]  # a file may run in several runtimes
    columns = names + [c for c in EXPORT_COLUMNS if any(c in r for r in rows)]
    table = Table(
        "export",
        columns,
        [[fmt(r.get(c), 4) for c in columns] for r in rows],
        f"from {EXPORT_REPORT}",
    )
    return Section("Exported artifacts", "export", [table])


def config_section(run: RunData) -> Section:
    rows = [[k, str(v).lower() if isinstance(v, bool) else str(v)] for k, v in run.config.items()]
    table = Table("config", ["key", "value"], rows, numeric=False)
    return Section("Configuration", "config", [table])


def run_document(run: RunData) -> Document:
    s = run.summary
    lead = (
        f"{run.value('strategy', '?')} on {run.value('num_clients', '?')} clients, "
        f"{s.get('rounds')} rounds, {run.value('backbone', '?')} backbone; "
        f"final accuracy {fmt(s.get('final_accuracy'))}. Run directory: {run.path}"
    )
    sections = [
        summary_section(run),
        rounds_section(run),
        partition_section(run),
        evaluation_section(run),
        communication_section(run),
    ]
    if run.has_epsilon:
        sections.append(privacy_section(run))
    if run.export_rows:
        sections.append(export_section(run))
    sections.append(config_section(run))
    return Document(f"fedge run report: {run.name}", lead, sections)
