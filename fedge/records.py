"""Flower record conventions shared by clients and the server.

Trainable parameters travel as numpy arrays in an ``ArrayRecord`` under
``arrays``; metrics under ``metrics``; the round's settings under ``config``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
FINGERPRINT = "fingerprint"
CLASS_NAMES = "class-names"
NUM_EXAMPLES = "num-examples"
SKIPPED_FILES = "skipped-files"
# Local DP: the client's cumulative epsilon after this round, and after one more like it.
DP_EPSILON = "dp-epsilon"
DP_NEXT_EPSILON = "dp-next-epsilon"
# Secure aggregation: legacy records carry no lists, so the round's config travels as
# JSON under LEGACY_CONFIG, with the order of the (unnamed) arrays under ARRAY_KEYS.
LEGACY_CONFIG = "fedge-config-json"
ARRAY_KEYS = "array-keys"
# Marks a client's refusal to train because its privacy budget is spent.
BUDGET_EXHAUSTED = "privacy budget exhausted"
# Closed-form head: the config key asking for statistics (its value: the Gram
# form) and the reply record holding them (see fedge.closed_form).
STATISTICS = "statistics"
STATISTICS_ORIGIN = "statistics-origin"  # ArrayRecord: the point statistics are taken about


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def record_nbytes(record: ArrayRecord) -> int:
    """Bytes of the serialized arrays (what goes over the wire, headers included)."""
    return sum(len(a.data) for a in record.values())


def content_nbytes(content: RecordDict) -> int:
    return sum(record_nbytes(r) for r in content.array_records.values())
