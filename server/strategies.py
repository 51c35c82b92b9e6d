"""Flower's own strategies, by config name, configured from a FedgeConfig."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)

from fedge.config import FedgeConfig
from fedge.metrics import summarize_confusion
from server.closed_form import ClosedFormHead, InitThen

NUM_EXAMPLES = "num-examples"
# Train metrics that add up (or take the slowest client) instead of averaging.
_SUMMED = ("skipped-files",)
_MAXED = ("train-seconds", "client-seconds", "embed-seconds", "dp-epsilon", "dp-next-epsilon")


def _metric_records(records: list[RecordDict]) -> list[MetricRecord]:
    return [next(iter(r.metric_records.values())) for r in records]


def aggregate_train_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Weighted means, except counts (summed) and times (slowest client)."""
    metrics = _metric_records(records)
    weights = np.asarray([float(m[weighted_by_key]) for m in metrics])  # type: ignore[arg-type]
    share = (
        weights / weights.sum() if weights.sum() > 0 else np.full(len(metrics), 1 / len(metrics))
    )
    out: dict[str, Any] = {weighted_by_key: int(weights.sum())}
    for key in metrics[0]:
        if key == weighted_by_key:
            continue
        values = [m[key] for m in metrics]
        if key in _SUMMED:
            out[key] = int(sum(values))  # type: ignore[arg-type]
        elif key in _MAXED:
            out[key] = float(max(values))  # type: ignore[type-var]
        else:
            out[key] = float(np.dot(share, np.asarray(values, dtype=np.float64)))
    return MetricRecord(out)


def aggregate_evaluate_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Sum clients' confusion matrices, so accuracy, macro-F1 and per-class
    recall are exact over all local test samples; loss is a weighted mean."""
    metrics = _metric_records(records)
    weights = np.asarray([float(m[weighted_by_key]) for m in metrics])  # type: ignore[arg-type]
    confusion = np.sum([np.asarray(m["confusion"], dtype=np.int64) for m in metrics], axis=0)
    k = int(round(np.sqrt(confusion.size)))
    summary = summarize_confusion(confusion.reshape(k, k))
    losses = np.asarray([float(m["loss"]) for m in metrics])  # type: ignore[arg-type]
    loss = float(np.dot(weights, losses) / weights.sum()) if weights.sum() > 0 else 0.0
    return MetricRecord(
        {
            weighted_by_key: int(weights.sum()),
            "loss": loss,
            "accuracy": float(summary["accuracy"]),  # type: ignore[arg-type]
            "macro-f1": float(summary["macro_f1"]),  # type: ignore[arg-type]
            "per-class-recall": list(summary["per_class_recall"]),  # type: ignore[arg-type]
            "confusion": confusion.tolist(),
        }
    )


def build_strategy(cfg: FedgeConfig) -> Strategy:
    """The strategy ``cfg.strategy`` names, with sampling and aggregation set;
    with ``init = closed-form`` its rounds follow one closed-form round."""
    strategy = _named_strategy(cfg, cfg.strategy)
    if cfg.init == "closed-form" and cfg.strategy != "closed-form":
        return InitThen(_named_strategy(cfg, "closed-form"), strategy)
    return strategy


def _named_strategy(cfg: FedgeConfig, name: str) -> Strategy:
    common: dict[str, Any] = {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": cfg.fraction_evaluate,
        "min_train_nodes": cfg.min_clients,
        "min_evaluate_nodes": cfg.min_clients if cfg.fraction_evaluate > 0 else 0,
        "min_available_nodes": cfg.min_clients,
        "weighted_by_key": NUM_EXAMPLES,
        "train_metrics_aggr_fn": aggregate_train_metrics,
        "evaluate_metrics_aggr_fn": aggregate_evaluate_metrics,
    }
    lr = {"server_learning_rate": cfg.server_lr} if cfg.server_lr else {}
    eta = {"eta": cfg.server_lr} if cfg.server_lr else {}
    if name == "closed-form":
        return ClosedFormHead(
            **common,
            solver=cfg.closed_form_solver,
            shrinkage=cfg.closed_form_shrinkage,
            gram=cfg.closed_form_gram,
        )
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedprox":
        return FedProx(**common, proximal_mu=cfg.proximal_mu)
    if name == "fedadam":
        return FedAdam(**common, **eta)
    if name == "fedyogi":
        return FedYogi(**common, **eta)
    if name == "fedavgm":
        return FedAvgM(**common, **lr, server_momentum=cfg.server_momentum)
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(**common, beta=cfg.trim_beta)
    if name == "krum":
        return Krum(**common, num_malicious_nodes=cfg.krum_malicious)
    if name == "bulyan":
        return Bulyan(**common, num_malicious_nodes=cfg.krum_malicious)
    raise ValueError(f"unknown strategy '{name}'.")
