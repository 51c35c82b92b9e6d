"""Who holds which samples: flwr-datasets partitioners and per-client splits.

Partitioning works on labels alone (no pixels are touched), so it is cheap for
thousands of clients and identical in every process that asks. A process
extracts only the partitions it is asked for (a simulation worker, those of
the clients it serves).
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedge.data.images import DatasetSplits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientIndices:
    """A client's training and local-test samples (indices into the train split)."""

    train: np.ndarray
    test: np.ndarray


def _dirichlet_min_size(n: int, num_partitions: int) -> int:
    return min(10, n // (2 * num_partitions))


def _make_partitioner(
    kind: str,
    num_partitions: int,
    alpha: float,
    classes_per_client: int,
    seed: int,
    n: int,
    min_size: int | None = None,
):  # -> flwr_datasets.partitioner.Partitioner
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        PathologicalPartitioner,
    )

    if kind == "iid":
        return IidPartitioner(num_partitions=num_partitions)
    if kind == "dirichlet":
        return DirichletPartitioner(
            num_partitions=num_partitions,
            partition_by="label",
            alpha=alpha,
            min_partition_size=(
                _dirichlet_min_size(n, num_partitions) if min_size is None else min_size
            ),
            self_balancing=False,
            shuffle=True,
            seed=seed,
        )
    if kind == "pathological":
        return PathologicalPartitioner(
            num_partitions=num_partitions,
            partition_by="label",
            num_classes_per_partition=classes_per_client,
            class_assignment_mode="first-deterministic",
            shuffle=True,
            seed=seed,
        )
    raise ValueError(f"unknown partitioner '{kind}'; allowed: iid, dirichlet, pathological.")


def partition(
    labels: np.ndarray,
    num_partitions: int,
    kind: str,
    *,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    seed: int = 0,
) -> list[np.ndarray]:
    """Split sample indices into ``num_partitions`` disjoint, seeded partitions."""
    parts = _partitions(labels.tobytes(), num_partitions, kind, alpha, classes_per_client, seed)
    return [parts.get(i) for i in range(num_partitions)]


def partition_of(
    labels: np.ndarray,
    partition_id: int,
    num_partitions: int,
    kind: str,
    *,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """The sample indices of one partition; the others are not materialized."""
    parts = _partitions(labels.tobytes(), num_partitions, kind, alpha, classes_per_client, seed)
    return parts.get(partition_id)


class _LazyPartitions:
    """A flwr-datasets partitioner over a label table; each partition's indices
    are extracted on first request and kept (they total one int per sample).

    ``load_partition`` builds a new ``datasets.Dataset`` per call (milliseconds
    each: seconds for a thousand clients). Dirichlet and pathological
    partitioners hold the assignment of rows to partitions once drawn; when
    that assignment reproduces ``load_partition`` on a partition, it is read
    directly."""

    def __init__(self, partitioner: Any, order: np.ndarray, num_partitions: int) -> None:
        self._partitioner = partitioner
        self._order = order  # row -> sample index
        self._loaded: dict[int, np.ndarray] = {}
        self._rows: dict[int, list[int]] | None = None
        self.num_partitions = num_partitions

    def _load(self, partition_id: int) -> np.ndarray:
        rows = self._partitioner.load_partition(partition_id)["index"]
        return np.sort(np.asarray(rows, dtype=np.int64))

    def get(self, partition_id: int) -> np.ndarray:
        if not 0 <= partition_id < self.num_partitions:
            raise ValueError(
                f"partition {partition_id} does not exist (0..{self.num_partitions - 1})."
            )
        found = self._loaded.get(partition_id)
        if found is None:
            if self._rows is not None:
                found = np.sort(self._order[np.asarray(self._rows[partition_id], dtype=np.int64)])
            else:
                found = self._load(partition_id)
                if not self._loaded:
                    self._adopt_assignment(partition_id, found)
            self._loaded[partition_id] = found
        return found

    def _adopt_assignment(self, partition_id: int, loaded: np.ndarray) -> None:
        rows = getattr(self._partitioner, "_partition_id_to_indices", None)
        if not isinstance(rows, dict) or len(rows) != self.num_partitions:
            return
        mine = np.sort(self._order[np.asarray(rows.get(partition_id, []), dtype=np.int64)])
        if np.array_equal(mine, loaded):
            self._rows = rows


@functools.lru_cache(maxsize=4)
def _partitions(
    labels_bytes: bytes,
    num_partitions: int,
    kind: str,
    alpha: float,
    classes_per_client: int,
    seed: int,
) -> _LazyPartitions:
    import datasets

    labels = np.frombuffer(labels_bytes, dtype=np.int64)
    if num_partitions > len(labels):
        raise ValueError(
            f"num-clients={num_partitions} exceeds the {len(labels)} training samples."
        )
    # Shuffle first: IidPartitioner shards contiguously, and folders are sorted.
    order = np.random.default_rng(seed).permutation(len(labels))

    def build(min_size: int | None) -> _LazyPartitions:
        table = datasets.Dataset.from_dict({"label": labels[order], "index": order})
        made = _make_partitioner(
            kind, num_partitions, alpha, classes_per_client, seed, len(labels), min_size
        )
        made.dataset = table
        parts = _LazyPartitions(made, order, num_partitions)
        with warnings.catch_warnings():  # flwr-datasets warns on every resampling
            warnings.simplefilter("ignore", UserWarning)
            parts.get(0)  # the partitioner assigns all samples on its first load
        return parts

    try:
        return build(None)
    except ValueError:
        if kind != "dirichlet":
            raise
    # Many clients with a small alpha: some partitions stay below the minimum
    # size however often the Dirichlet draw is repeated. Accept the draw as it
    # comes (empty clients then refuse to train, and the server records it).
    log.warning(
        "dirichlet partitioner: with dirichlet-alpha=%g and %d clients, some clients "
        "hold fewer than %d samples, maybe none (see the per-client label counts); "
        "raise dirichlet-alpha or lower num-clients for fuller partitions.",
        alpha,
        num_partitions,
        _dirichlet_min_size(len(labels), num_partitions),
    )
    return build(0)


def split_client(
    indices: np.ndarray,
    *,
    test_fraction: float,
    max_train: int,
    seed: int,
    client_id: int,
) -> ClientIndices:
    """Shuffle a partition, hold out its local test split, cap its training part.

    ``max_train`` caps training samples (0 = no cap); the test part is capped in
    proportion so that it stays ``test_fraction`` of what the client uses.
    """
    rng = np.random.default_rng([seed, client_id])
    shuffled = rng.permutation(indices)
    n_test = int(round(len(shuffled) * test_fraction))
    test, train = shuffled[:n_test], shuffled[n_test:]
    if max_train:
        train = train[:max_train]
        if test_fraction:
            test = test[: int(np.ceil(max_train * test_fraction / (1 - test_fraction)))]
    return ClientIndices(np.sort(train), np.sort(test))


def client_indices(
    splits: DatasetSplits,
    partition_id: int,
    num_partitions: int,
    kind: str,
    *,
    alpha: float,
    classes_per_client: int,
    test_fraction: float,
    max_train: int,
    seed: int,
) -> ClientIndices:
    """The samples of simulated client ``partition_id``."""
    indices = partition_of(
        splits.train.labels,
        partition_id,
        num_partitions,
        kind,
        alpha=alpha,
        classes_per_client=classes_per_client,
        seed=seed,
    )
    return split_client(
        indices,
        test_fraction=test_fraction,
        max_train=max_train,
        seed=seed,
        client_id=partition_id,
    )


def server_test_indices(n: int, max_samples: int, seed: int) -> np.ndarray:
    """A seeded subset of the held-out split (all of it when ``max_samples`` is 0)."""
    if not max_samples or max_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def label_counts(labels: np.ndarray, indices: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels[indices], minlength=num_classes).tolist()
