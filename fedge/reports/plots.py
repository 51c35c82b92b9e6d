"""The report's plots, as PNG bytes.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``,
rendered by the Agg canvas), never through pyplot's global state, so plotting
needs no display and is safe in any thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

DPI = 110
ANNOTATE_MAX_CELLS = 400  # above this, heatmaps drop the numbers in their cells


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def _round_axis(ax: Any, rows: Sequence[dict[str, Any]], from_zero: bool = False) -> None:
    ax.set_xlabel("round")
    ax.grid(True, alpha=0.3)
    rounds = [0] * from_zero + [r["round"] for r in rows]
    if rounds and len(rounds) <= 31:
        ax.set_xticks(rounds)


def _plot(ax: Any, xs: list[int], ys: list[float], label: str, **kw: Any) -> None:
    if xs:
        ax.plot(xs, ys, marker="o", markersize=3.5, label=label, **kw)


def accuracy_loss_figure(
    rows: Sequence[dict[str, Any]], centralized: bool, initial_accuracy: float | None = None
) -> bytes:
    """Accuracy (left) and loss (right) per round: the server's held-out split
    when ``centralized`` (from round 0, the untrained head, when
    ``initial_accuracy`` is known), the clients' local test splits, and training."""
    fig = Figure(figsize=(11, 4))
    acc_ax, loss_ax = fig.subplots(1, 2)
    if centralized:
        xs, ys = _series(rows, "accuracy")
        if initial_accuracy is not None:
            xs, ys = [0, *xs], [float(initial_accuracy), *ys]
        _plot(acc_ax, xs, ys, "centralized (held-out split)")
        _plot(loss_ax, *_series(rows, "loss"), "centralized (held-out split)")
    _plot(acc_ax, *_series(rows, "federated_accuracy"), "federated (clients' test splits)")
    _plot(acc_ax, *_series(rows, "train_accuracy"), "clients' training", linestyle="--")
    _plot(loss_ax, *_series(rows, "federated_loss"), "federated (clients' test splits)")
    _plot(loss_ax, *_series(rows, "train_loss"), "clients' training", linestyle="--")
    acc_ax.set_title("accuracy per round")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0, 1)
    loss_ax.set_title("loss per round")
    loss_ax.set_ylabel("cross-entropy loss")
    from_zero = centralized and initial_accuracy is not None
    _round_axis(acc_ax, rows, from_zero)
    _round_axis(loss_ax, rows)
    for ax in (acc_ax, loss_ax):
        ax.legend(fontsize=8)
    return to_png(fig)


def _heatmap(
    ax: Any, values: np.ndarray, colors: np.ndarray, cmap: str, labels_fmt: str = "{:d}"
) -> Any:
    image = ax.imshow(colors, cmap=cmap, aspect="auto", vmin=0)
    if values.size <= ANNOTATE_MAX_CELLS:
        top = colors.max() if colors.size else 0
        for (i, j), v in np.ndenumerate(values):
            dark = top > 0 and colors[i, j] > 0.55 * top
            ax.text(
                j,
                i,
                labels_fmt.format(int(v)),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    return image


def label_distribution_figure(counts: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Clients (rows) by classes (columns): training samples of each label."""
    values = np.asarray(counts, dtype=np.int64)
    n_clients = values.shape[0]
    fig = Figure(figsize=(max(6.0, 0.7 * len(classes) + 2), min(14.0, 0.35 * n_clients + 1.6)))
    ax = fig.subplots()
    image = _heatmap(ax, values, values.astype(float), "Blues")
    ax.set_xticks(range(len(classes)), list(classes), rotation=45, ha="right")
    step = max(1, n_clients // 40)
    ax.set_yticks(range(0, n_clients, step), [str(i) for i in range(0, n_clients, step)])
    ax.set_xlabel("class")
    ax.set_ylabel("client (partition id)")
    ax.set_title("training samples per client and class")
    fig.colorbar(image, ax=ax, label="samples")
    return to_png(fig)


def recall_figure(recall: Sequence[float], classes: Sequence[str]) -> bytes:
    """Recall of each class on the held-out split, as horizontal bars."""
    fig = Figure(figsize=(6.5, max(2.5, 0.32 * len(classes) + 1.2)))
    ax = fig.subplots()
    ys = np.arange(len(classes))
    ax.barh(ys, recall, color="#4c72b0")
    for y, r in zip(ys, recall, strict=True):
        ax.text(r + 0.01, y, f"{r:.2f}", va="center", fontsize=8)
    ax.set_yticks(ys, list(classes))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("recall")
    ax.set_title("per-class recall (held-out split)")
    ax.grid(True, axis="x", alpha=0.3)
    return to_png(fig)


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Counts of (true, predicted) pairs; colour is the share of the true class."""
    values = np.asarray(confusion, dtype=np.int64)
    support = values.sum(axis=1, keepdims=True)
    rates = np.divide(values, support, out=np.zeros(values.shape), where=support > 0)
    side = max(4.5, 0.5 * len(classes) + 2.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = _heatmap(ax, values, rates, "Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, list(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (held-out split; counts, colour = share of true class)")
    fig.colorbar(image, ax=ax, label="share of true class")
    return to_png(fig)


def bytes_figure(rows: Sequence[dict[str, Any]]) -> bytes:
    """Bytes sent to and received from the clients each round (all clients)."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    rounds = np.asarray([r["round"] for r in rows], dtype=float)
    up = np.asarray([r["bytes_up"] for r in rows], dtype=float) / 1000
    down = np.asarray([r["bytes_down"] for r in rows], dtype=float) / 1000
    ax.bar(rounds - 0.2, up, width=0.4, label="up (clients to server)")
    ax.bar(rounds + 0.2, down, width=0.4, label="down (server to clients)")
    ax.set_ylabel("KB per round (all clients)")
    ax.set_title("bytes per round")
    ax.set_ylim(0, 1.3 * max([*up, *down, 1e-3]))
    _round_axis(ax, rows)
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    return to_png(fig)


def epsilon_figure(rows: Sequence[dict[str, Any]], delta: float | None) -> bytes:
    """Privacy spent (epsilon) after each round."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    _plot(ax, *_series(rows, "epsilon"), "epsilon", color="#c44e52")
    ax.set_ylabel("epsilon spent" + (f" (delta = {delta:g})" if delta else ""))
    ax.set_title("privacy spent per round")
    ax.set_ylim(bottom=0)
    _round_axis(ax, rows)
    return to_png(fig)


def compare_figure(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> bytes:
    """Accuracy per round, one line per run."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    longest: Sequence[dict[str, Any]] = []
    for label, rows in runs:
        _plot(ax, *_series(rows, "accuracy"), label)
        longest = rows if len(rows) > len(longest) else longest
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy per round")
    _round_axis(ax, longest)
    ax.legend(fontsize=8)
    return to_png(fig)
