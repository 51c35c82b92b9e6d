"""Run a federation of simulated clients on this machine with Flower's
simulation engine, after one shared embedding pass over the samples the
PyTorch clients use. With ``edge-fraction`` > 0 some clients are edge clients
(``client/kinds.py``): they get the exported backbone and embed their own."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from client.kinds import edge_partitions, is_edge_partition
from client.runtimes import artifact_format, choose_runtime
from fedge import rundir
from fedge.config import FedgeConfig
from fedge.data.federated import Subset, dataset_splits, server_test, simulated_client
from fedge.data.partition import label_counts
from fedge.device import resolve_device
from fedge.embeddings.cache import embed_subset, missing_count
from fedge.models.model import load_backbone_for
from fedge.paths import cache_dir
from server.checkpoint import open_run
from server.reporting import ConsoleReporter
from server.rounds import RoundCallback

ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


class SimulationDisplay(Protocol):
    """What a simulation shows while it runs (see fedge/cli/display.py)."""

    def print(self, line: str) -> None: ...

    def progress(
        self, description: str, total: int
    ) -> AbstractContextManager[Callable[[int], None]]: ...

    def running(self, num_rounds: int) -> AbstractContextManager[None]:
        """Entered while the federation runs (after the embedding pass)."""
        ...

    def round_callbacks(self, num_rounds: int) -> list[RoundCallback]: ...


class PlainDisplay:
    """Plain lines on stdout: partitions, then one line per round."""

    def print(self, line: str) -> None:
        print(line)

    def progress(self, description: str, total: int) -> AbstractContextManager[Any]:
        return nullcontext(lambda n: None)

    def running(self, num_rounds: int) -> AbstractContextManager[None]:
        return nullcontext()

    def round_callbacks(self, num_rounds: int) -> list[RoundCallback]:
        return [ConsoleReporter(num_rounds)]


def absolute_paths(cfg: FedgeConfig) -> FedgeConfig:
    """Make path-valued keys absolute (the cache dir resolved), since Ray
    workers may start in another directory or environment."""
    updates: dict[str, Any] = {"cache-dir": str(cache_dir(cfg))}
    if cfg.data_path:
        updates["data-path"] = str(Path(cfg.data_path).expanduser().resolve())
    if cfg.weights not in ("imagenet", "none"):
        updates["weights"] = str(Path(cfg.weights).expanduser().resolve())
    return cfg.replace(updates)


@dataclass(frozen=True)
class PartitionSummary:
    train_counts: list[list[int]]
    test_counts: list[list[int]]
    classes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "train_label_counts": self.train_counts,
            "test_label_counts": self.test_counts,
        }


def partition_summary(cfg: FedgeConfig) -> PartitionSummary:
    """Per-client label counts of the simulation's partitions."""
    train, test = [], []
    classes: list[str] = []
    for pid in range(cfg.num_clients):
        data = simulated_client(cfg, pid, cfg.num_clients)
        classes = data.classes
        labels = data.train.source.labels
        train.append(label_counts(labels, data.train.indices, len(classes)))
        test.append(label_counts(labels, data.test.indices, len(classes)))
    return PartitionSummary(train, test, classes)


def _no_progress(_: str, __: int) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda n: None)


PASS_CHUNK = 4096  # samples per disk shard of the shared embedding pass


def precompute_embeddings(cfg: FedgeConfig, progress: ProgressFactory = _no_progress) -> int:
    """One embedding pass over every sample any PyTorch client or the server will use,
    written to the disk cache that all simulated clients read. Returns the
    number of images that went through the backbone.

    The pass goes in chunks, each saved as its own shard: memory stays
    bounded by a chunk, and an interrupted pass resumes where it stopped."""
    loaded = load_backbone_for(cfg)
    splits = dataset_splits(cfg)
    torch_clients = [
        simulated_client(cfg, p, cfg.num_clients)
        for p in range(cfg.num_clients)
        if not is_edge_partition(p, cfg.edge_fraction)  # edge clients embed their own
    ]
    used = np.unique(
        np.concatenate(
            [np.zeros(0, np.int64)]
            + [np.concatenate([c.train.indices, c.test.indices]) for c in torch_clients]
        )
    )
    train_chunks = [
        Subset(splits.train, used[i : i + PASS_CHUNK]) for i in range(0, len(used), PASS_CHUNK)
    ]
    subsets = [*train_chunks, server_test(cfg)[1]]
    missing = [missing_count(cfg, loaded, s) for s in subsets]
    todo = sum(missing)
    if todo:
        device = resolve_device(cfg.device)
        with progress("embedding pass", todo) as advance:
            for subset, n in zip(subsets, missing, strict=True):
                if n:
                    embed_subset(cfg, loaded, subset, device, on_progress=advance)
    return todo


def prepare_edge_backbone(cfg: FedgeConfig) -> str:
    """Export (or find in the cache) the backbone artifact the simulated edge
    clients will ask for, so round 1 does not wait for it; a line about it."""
    from server.artifacts import BackboneArtifacts

    fmt = artifact_format(choose_runtime(cfg.edge_runtime))
    start = time.perf_counter()
    _, info = BackboneArtifacts(load_backbone_for(cfg), cache_dir(cfg)).get(fmt)
    n_edge = len(edge_partitions(cfg.num_clients, cfg.edge_fraction))
    return (
        f"edge clients: {n_edge} of {cfg.num_clients} ({choose_runtime(cfg.edge_runtime)}), "
        f"backbone.{fmt} {info.size_bytes / 1e6:.2f} MB ready in "
        f"{time.perf_counter() - start:.1f}s"
    )


# Ray workers inherit the environment: their Flower logs (which Ray copies to the
# console, e.g. "Manually terminating ClientAppActor" at shutdown) keep errors only.
# Client failures still reach the server as error replies.
_QUIET_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "FLWR_LOG_LEVEL": "ERROR"}


class _DropDeprecationNotice(logging.Filter):
    """`run_simulation` announces its deprecation on every call; we know."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DEPRECATED FEATURE" not in record.getMessage()


@contextmanager
def quiet_simulation_logs() -> Iterator[None]:
    """Keep Flower's warnings and errors, drop its per-round INFO chatter, while a
    simulation runs; then put the logger and the environment back, so processes
    started later (a SuperLink, say) log as they would have."""
    logger = logging.getLogger("flwr")
    level, drop = logger.level, _DropDeprecationNotice()
    logger.setLevel(logging.WARNING)
    logger.addFilter(drop)
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.removeFilter(drop)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ray_address(cfg: FedgeConfig) -> str:
    """The Ray cluster to join: ``ray-address``, else $RAY_ADDRESS; empty = local."""
    return cfg.ray_address or os.environ.get("RAY_ADDRESS", "")


def backend_config(cfg: FedgeConfig) -> dict[str, Any]:
    """Flower's Ray backend settings: client resources, and either a local Ray
    sized to this machine or the address of an existing cluster (whose size
    Ray knows; then no CPU count may be given)."""
    address = ray_address(cfg)
    init_args: dict[str, Any] = {"include_dashboard": False}
    if address:
        init_args["address"] = address
    else:
        init_args["num_cpus"] = os.cpu_count() or 1
    return {
        "client_resources": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        "init_args": init_args,
    }


def run_simulation(
    cfg: FedgeConfig,
    *,
    display: SimulationDisplay | None = None,
    callbacks: Sequence[RoundCallback] = (),
) -> Path:
    """Run ``cfg`` as a simulation; return its run directory. ``callbacks``
    see every round's report too (the ServerApp runs in this process)."""
    from flwr.simulation import run_simulation as flwr_run_simulation

    from client.dispatch import build_dispatching_app
    from export.after_run import export_outcome, require_export_dependencies
    from server.app import build_server_app
    from server.tracking import require_tensorboard
    from simulations.inprocess import run_inprocess_simulation

    display = display or PlainDisplay()
    if cfg.tensorboard:
        require_tensorboard()  # before minutes of work, not after
    if cfg.export:
        require_export_dependencies()
    cfg = absolute_paths(cfg)
    run_path = rundir.new_run_dir(cfg)
    cfg = cfg.replace({"run-dir": str(run_path)})
    open_run(run_path, cfg)  # refuse a run dir it may not start or continue, before any work
    summary = partition_summary(cfg)
    rundir.write_json(run_path / rundir.PARTITIONS, summary.to_json())
    for pid, counts in enumerate(summary.train_counts):
        display.print(f"client {pid:>3}: {sum(counts):>5} train samples, label counts {counts}")
    if cfg.embedding_cache == "disk" and cfg.unfreeze_last == 0:
        precompute_embeddings(cfg, display.progress)
    if edge_partitions(cfg.num_clients, cfg.edge_fraction):
        display.print(prepare_edge_backbone(cfg))
    server_app = build_server_app(
        cfg, printer=None, callbacks=[*display.round_callbacks(cfg.num_rounds), *callbacks]
    )
    with quiet_simulation_logs(), display.running(cfg.num_rounds):
        if cfg.simulation_backend == "inprocess":
            run_inprocess_simulation(
                server_app,
                build_dispatching_app(cfg),
                cfg.num_clients,
                cfg.to_run_config(),
                seed=cfg.seed,
            )
        else:
            flwr_run_simulation(
                server_app=server_app,
                client_app=build_dispatching_app(cfg),
                num_supernodes=cfg.num_clients,
                backend_config=backend_config(cfg),
            )
    if cfg.export:  # the ServerApp exported after the last round; show how it went
        for line in export_outcome(run_path):
            display.print(line)
    return run_path
