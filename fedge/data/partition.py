"""Who holds which samples: flwr-datasets partitioners and per-client splits.

Partitioning works on labels alone (no pixels are touched), so it is cheap for
thousands of clients and identical in every process that asks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fedge.data.images import DatasetSplits


@dataclass(frozen=True)
class ClientIndices:
    """A client's training and local-test samples (indices into the train split)."""

    train: np.ndarray
    test: np.ndarray


def _make_partitioner(
    kind: str, num_partitions: int, alpha: float, classes_per_client: int, seed: int, n: int
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
            min_partition_size=min(10, n // (2 * num_partitions)),
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
    return list(
        _partition_cached(labels.tobytes(), num_partitions, kind, alpha, classes_per_client, seed)
    )


@functools.lru_cache(maxsize=4)
def _partition_cached(
    labels_bytes: bytes,
    num_partitions: int,
    kind: str,
    alpha: float,
    classes_per_client: int,
    seed: int,
) -> tuple[np.ndarray, ...]:
    import datasets

    labels = np.frombuffer(labels_bytes, dtype=np.int64)
    if num_partitions > len(labels):
        raise ValueError(
            f"num-clients={num_partitions} exceeds the {len(labels)} training samples."
        )
    # Shuffle first: IidPartitioner shards contiguously, and folders are sorted.
    order = np.random.default_rng(seed).permutation(len(labels))
    table = datasets.Dataset.from_dict({"label": labels[order].tolist(), "index": order.tolist()})
    partitioner = _make_partitioner(
        kind, num_partitions, alpha, classes_per_client, seed, len(labels)
    )
    partitioner.dataset = table
    return tuple(
        np.sort(np.asarray(partitioner.load_partition(i)["index"], dtype=np.int64))
        for i in range(num_partitions)
    )


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
    parts = partition(
        splits.train.labels,
        num_partitions,
        kind,
        alpha=alpha,
        classes_per_client=classes_per_client,
        seed=seed,
    )
    return split_client(
        parts[partition_id],
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
