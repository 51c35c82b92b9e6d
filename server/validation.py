"""Checks on every client update before it reaches the strategy.

An update must have the global head's keys, shapes and dtypes, finite
values, a positive finite weight, the same metric keys as the other replies,
and (when a limit is set) an L2 norm of ``new - global`` within it; a
closed-form reply carries embedding statistics instead, which must be finite. A reply
that fails is set aside with its node id and the reason, and the round goes
on with the rest; without this, one malformed reply makes Flower's strategies
skip the whole round, and one non-finite or huge update spoils FedAvg.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict

from fedge.records import NUM_EXAMPLES, STATISTICS


@dataclass(frozen=True)
class UpdateRules:
    max_update_norm: float = 0.0  # 0 = no limit
    weight_key: str = NUM_EXAMPLES
    # The head's own dtypes, which clients send back. The global arrays may be wider:
    # FedAdam, FedYogi and FedAvgM aggregate in float64. None: the global arrays' dtypes.
    dtypes: Mapping[str, str] | None = None


def _values(name: str, array: Array) -> np.ndarray | str:
    """The array's values, or why they cannot be used (``name`` leads the reason)."""
    try:
        value = array.numpy()
    except Exception as e:  # bytes that are not the array they claim to be
        return f"{name} cannot be decoded as an array ({type(e).__name__}: {e})"
    if not np.isfinite(value).all():
        return f"{name} has non-finite values (NaN or inf)"
    return value


def _statistics_problem(statistics: ArrayRecord) -> str | None:
    """A closed-form reply: finite arrays (their shapes are the strategy's to check)."""
    for key, array in statistics.items():
        value = _values(f"statistics '{key}'", array)
        if isinstance(value, str):
            return value
    return None


def _arrays_problem(content: RecordDict, reference: ArrayRecord, rules: UpdateRules) -> str | None:
    records = content.array_records
    if len(records) == 1 and STATISTICS in records:
        return _statistics_problem(records[STATISTICS])
    if len(records) != 1:
        return f"expected one ArrayRecord with the head, got {len(records)} ({sorted(records)})"
    arrays = next(iter(records.values()))
    missing, extra = sorted(set(reference) - set(arrays)), sorted(set(arrays) - set(reference))
    if missing or extra:
        return f"keys differ from the global head's (missing {missing}, unexpected {extra})"
    squared = 0.0
    for key, expected in reference.items():
        got = arrays[key]
        if list(got.shape) != list(expected.shape):
            return f"'{key}' has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        dtype = rules.dtypes.get(key, expected.dtype) if rules.dtypes else expected.dtype
        if got.dtype != dtype:
            return f"'{key}' has dtype {got.dtype}, expected {dtype}"
        value = _values(f"'{key}'", got)
        if isinstance(value, str):
            return value
        squared += float(np.sum((value.astype(np.float64) - expected.numpy()) ** 2))
    norm = math.sqrt(squared)
    if rules.max_update_norm > 0 and not norm <= rules.max_update_norm:
        return f"update norm {norm:.4g} exceeds max-update-norm {rules.max_update_norm:g}"
    return None


def _metrics_problem(content: RecordDict, rules: UpdateRules) -> str | None:
    records = content.metric_records
    if len(records) != 1:
        return f"expected one MetricRecord, got {len(records)}"
    weight = next(iter(records.values())).get(rules.weight_key)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        return f"metric '{rules.weight_key}' is missing or not a number ({weight!r})"
    if not (math.isfinite(weight) and weight > 0):
        return f"metric '{rules.weight_key}' must be a positive finite number, got {weight!r}"
    return None


def _metric_keys(content: RecordDict) -> frozenset[str]:
    return frozenset(next(iter(content.metric_records.values())).keys())


def screen_updates(
    replies: list[Message], reference: ArrayRecord, rules: UpdateRules
) -> tuple[list[Message], list[tuple[int, str]]]:
    """Split train replies into accepted ones and ``(node id, reason)`` rejections."""
    accepted: list[Message] = []
    rejected: list[tuple[int, str]] = []
    for reply in replies:
        problem = _metrics_problem(reply.content, rules) or _arrays_problem(
            reply.content, reference, rules
        )
        if problem is None:
            accepted.append(reply)
        else:
            rejected.append((reply.metadata.src_node_id, f"rejected update: {problem}"))
    if accepted:  # Flower's strategies need the same metric keys in every reply
        usual, _ = Counter(_metric_keys(r.content) for r in accepted).most_common(1)[0]
        odd = [r for r in accepted if _metric_keys(r.content) != usual]
        for reply in odd:
            extra = sorted(_metric_keys(reply.content) ^ usual)
            rejected.append(
                (
                    reply.metadata.src_node_id,
                    f"rejected update: its metric keys differ from the other clients' ({extra})",
                )
            )
        accepted = [r for r in accepted if _metric_keys(r.content) == usual]
    return accepted, rejected
