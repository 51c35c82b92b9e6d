"""The data of a federation, as every process of a run derives it from the config.

Simulation: one dataset, its training split partitioned across clients, its
held-out split evaluated by the server. Deployment: each client reads its own
``data-path``; the server evaluates on the run config's ``data-path``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedge.config import FedgeConfig
from fedge.data.images import DatasetSplits, ImageSource
from fedge.data.partition import (
    ClientIndices,
    client_indices,
    server_test_indices,
    split_client,
)
from fedge.data.sources import DatasetError, load_dataset
from fedge.paths import cache_dir


@dataclass(frozen=True)
class Subset:
    """Some samples of an image source."""

    source: ImageSource
    indices: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class ClientData:
    classes: list[str]
    train: Subset
    test: Subset
    skipped_files: int


@functools.lru_cache(maxsize=4)
def _splits(dataset: str, data_path: str, cache: str) -> DatasetSplits:
    return load_dataset(dataset, data_path, Path(cache)).with_holdout()


def dataset_splits(cfg: FedgeConfig, data_path: str | None = None) -> DatasetSplits:
    """The dataset a config names, with a test split (held out when absent)."""
    path = cfg.data_path if data_path is None else data_path
    return _splits(cfg.dataset, path, str(cache_dir(cfg)))


def simulated_client(cfg: FedgeConfig, partition_id: int, num_partitions: int) -> ClientData:
    """Client ``partition_id``'s share of the simulation dataset."""
    splits = dataset_splits(cfg)
    ci: ClientIndices = client_indices(
        splits,
        partition_id,
        num_partitions,
        cfg.partitioner,
        alpha=cfg.dirichlet_alpha,
        classes_per_client=cfg.classes_per_client,
        test_fraction=cfg.local_test_fraction,
        max_train=cfg.max_samples_per_client,
        seed=cfg.seed,
    )
    return ClientData(
        splits.classes,
        Subset(splits.train, ci.train),
        Subset(splits.train, ci.test),
        len(splits.skipped_files),
    )


def deployed_client(cfg: FedgeConfig, data_path: str) -> ClientData:
    """A real client's own folder: its train split, and its test split or a holdout."""
    splits = load_dataset(cfg.dataset, data_path, cache_dir(cfg))
    if splits.test is not None:
        train = Subset(splits.train, _capped(len(splits.train), cfg))
        test = Subset(splits.test, np.arange(len(splits.test)))
    else:
        ci = split_client(
            np.arange(len(splits.train)),
            test_fraction=cfg.local_test_fraction,
            max_train=cfg.max_samples_per_client,
            seed=cfg.seed,
            client_id=0,
        )
        train, test = Subset(splits.train, ci.train), Subset(splits.train, ci.test)
    return ClientData(splits.classes, train, test, len(splits.skipped_files))


def _capped(n: int, cfg: FedgeConfig) -> np.ndarray:
    if not cfg.max_samples_per_client or cfg.max_samples_per_client >= n:
        return np.arange(n)
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(n, size=cfg.max_samples_per_client, replace=False))


def server_test(cfg: FedgeConfig) -> tuple[list[str], Subset]:
    """The server's held-out evaluation samples."""
    splits = dataset_splits(cfg)
    assert splits.test is not None
    idx = server_test_indices(len(splits.test), cfg.max_test_samples, cfg.seed)
    return splits.classes, Subset(splits.test, idx)


def server_has_data(cfg: FedgeConfig) -> bool:
    """Whether the server holds an evaluation set: a ``data-path`` of its own, or
    CIFAR-10 to download (unless ``class-names`` says it has no data)."""
    return bool(cfg.data_path) or (cfg.dataset == "cifar10" and not cfg.class_names)


def server_data(cfg: FedgeConfig) -> tuple[list[str], Subset | None]:
    """The model's classes and the server's held-out samples (None: the server has
    no data of its own and evaluation is federated only)."""
    if server_has_data(cfg):
        classes, test = server_test(cfg)
        if cfg.class_names and set(cfg.class_name_list) != set(classes):
            raise DatasetError(
                f"class-names {cfg.class_name_list} differ from the classes of the "
                f"server's data-path {classes}; fix class-names or leave it empty."
            )
        return classes, test
    if not cfg.class_names:
        raise DatasetError(
            f"the server has no data: dataset={cfg.dataset} with an empty data-path. Set "
            "data-path to a held-out set on the server (centralized evaluation), or "
            "class-names='name1,name2,...' (the class folder names every client uses) to "
            "evaluate on the clients only."
        )
    return cfg.class_name_list, None
