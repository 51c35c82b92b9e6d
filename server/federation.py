"""What the ServerApp does, free of Flower's app plumbing: set up the run,
drive the rounds, save the model and the run directory."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fedge import rundir
from fedge.config import FedgeConfig
from fedge.data.federated import server_data
from fedge.device import resolve_device
from fedge.models.model import (
    FedgeModel,
    LoadedBackbone,
    build_model,
    load_backbone_for,
    load_trainable_state,
    trainable_state,
)
from fedge.paths import cache_dir
from fedge.records import CLASS_NAMES, FINGERPRINT, from_record, to_record
from server import checkpoint
from server.artifacts import BackboneArtifacts
from server.availability import BoundedGrid
from server.checkpoint import Checkpoint, Checkpointer
from server.closed_form import set_statistics_origin
from server.delivery import BackboneDelivery
from server.evaluation import CentralEvaluator
from server.reporting import ConsoleReporter, RunDirRecorder
from server.rounds import RoundCallback, node_preparer, run_rounds
from server.tracking import tracking_callbacks
from server.training import Training, build_training


@dataclass
class ServerSetup:
    """Everything a run needs before its first round."""

    cfg: FedgeConfig
    run_dir: Path
    loaded: LoadedBackbone
    classes: list[str]
    model: FedgeModel
    evaluator: CentralEvaluator | None  # None: the server has no data of its own
    resumed: Checkpoint | None = None  # the checkpoint a resumed run continues from


def prepare(
    cfg: FedgeConfig, on_embed_progress: Callable[[int], None] | None = None
) -> ServerSetup:
    """Run dir (checked before anything in it changes), backbone, held-out
    embeddings and the initial model."""
    run_dir = rundir.new_run_dir(cfg)
    resumed = checkpoint.open_run(run_dir, cfg)
    random.seed(cfg.seed)  # Flower samples clients with `random`
    device = resolve_device(cfg.device)
    loaded = load_backbone_for(cfg)
    if resumed is not None:
        checkpoint.check_fingerprint(resumed, loaded.fingerprint, run_dir)
    classes, test = server_data(cfg)
    model = build_model(cfg, len(classes), loaded)
    evaluator = (
        CentralEvaluator.build(cfg, loaded, test, len(classes), device, on_embed_progress)
        if test is not None
        else None
    )
    rundir.write_config(run_dir, cfg)
    return ServerSetup(cfg, run_dir, loaded, classes, model, evaluator, resumed)


def model_meta(setup: ServerSetup) -> dict[str, Any]:
    cfg, pre = setup.cfg, setup.loaded.preprocessing
    return {
        "labels": setup.classes,
        "num_classes": len(setup.classes),
        "image_size": pre.image_size,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "interpolation": pre.interpolation,
        "layout": "nchw",
        "input": "float32 RGB in [0,1], resized to image_size x image_size, then (x-mean)/std",
        "backbone": cfg.backbone,
        "weights": cfg.weights,
        "embedding_dim": setup.loaded.module.embedding_dim,
        "head": cfg.head,
        "mlp_hidden": cfg.mlp_hidden,
        "unfreeze_last": cfg.unfreeze_last,
        "fingerprint": setup.loaded.fingerprint,
        "run_dir": str(setup.run_dir),
    }


def run_server(
    grid: Grid,
    cfg: FedgeConfig,
    *,
    extra_callbacks: Sequence[RoundCallback] = (),
    printer: Callable[[str], None] | None = print,
    on_embed_progress: Callable[[int], None] | None = None,
) -> Path:
    """Drive a whole federation; return the run directory."""
    if cfg.export:
        from export.after_run import require_export_dependencies

        require_export_dependencies()  # before the rounds, not after
    setup = prepare(cfg, on_embed_progress)
    model, evaluator = setup.model, setup.evaluator
    initial = trainable_state(model)
    n_trainable = sum(v.size for v in initial.values())
    n_total = sum(p.numel() for p in model.parameters())
    log(
        INFO,
        "fedge: run dir %s; %d of %d parameters train and travel",
        setup.run_dir,
        n_trainable,
        n_total,
    )
    initial_metrics = evaluator.evaluate(model, initial) if evaluator is not None else None

    recorder = RunDirRecorder(
        setup.run_dir,
        {
            "backbone": cfg.backbone,
            "weights": cfg.weights,
            "fingerprint": setup.loaded.fingerprint,
            "head": cfg.head,
            "strategy": cfg.strategy,
            "num_clients": cfg.num_clients,
            "num_rounds": cfg.num_rounds,
            "classes": setup.classes,
            "trainable_parameters": int(n_trainable),
            "model_parameters": int(n_total),
            "initial_accuracy": initial_metrics["accuracy"] if initial_metrics else None,
            **robustness_summary(cfg),
        },
    )
    backbones = BackboneDelivery(
        BackboneArtifacts(setup.loaded, cache_dir(cfg)), setup.loaded.fingerprint
    )
    bounded = BoundedGrid(grid, cfg.min_clients, cfg.round_timeout)
    deliver = node_preparer(bounded, backbones.prepare, cfg.round_timeout)
    dtypes = {k: str(v.dtype) for k, v in initial.items()}
    training = build_training(
        bounded, cfg, cfg.round_timeout, cfg.min_clients, prepare=deliver, dtypes=dtypes
    )
    strategy = training.strategy
    if evaluator is not None and len(evaluator.x):
        # closed-form statistics about the held-out mean: precise floats
        set_statistics_origin(strategy, evaluator.x.mean(0))
    start, first_round = continue_run(setup, strategy, recorder, initial)
    checkpointer = Checkpointer(
        setup.run_dir,
        strategy,
        cfg,
        setup.loaded.fingerprint,
        wall_seconds=lambda: time.perf_counter() - recorder.started,
    )
    callbacks: list[RoundCallback] = [recorder, checkpointer]
    callbacks += tracking_callbacks(cfg, setup.run_dir)
    callbacks += extra_callbacks
    if printer is not None:
        callbacks.append(ConsoleReporter(cfg.num_rounds, printer))
    if hasattr(strategy, "on_round_end"):  # a strategy that may end the run itself
        callbacks.append(strategy)  # type: ignore[arg-type]

    config = ConfigRecord({FINGERPRINT: setup.loaded.fingerprint, CLASS_NAMES: setup.classes})

    def central(_: int, arrays: ArrayRecord) -> dict[str, Any]:
        assert evaluator is not None
        return evaluator.evaluate(model, from_record(arrays))

    final = run_rounds(
        bounded,
        strategy,
        to_record(start),
        num_rounds=cfg.num_rounds,
        train_config=config,
        evaluate_config=config,
        central_eval=central if evaluator is not None else None,
        callbacks=callbacks,
        timeout=cfg.round_timeout,
        first_round=first_round,
        min_replies=cfg.min_clients,
        prepare_nodes=backbones.prepare,
        training=training.step,
        accounting=training.ledger,
    )
    final_arrays = from_record(final)
    load_trainable_state(model, final_arrays)
    privacy = privacy_summary(cfg, training)
    save_final_model(setup, final_arrays, privacy)
    recorder.write_summary(
        model_dir=str(setup.run_dir / rundir.MODEL_DIR),
        backbone_delivery=backbones.summary(),
        **privacy,
    )
    if cfg.export:
        from export.after_run import export_after_run

        export_after_run(
            setup.run_dir,
            printer or (lambda line: log(INFO, "fedge: %s", line)),
            lambda line: log(WARNING, "fedge: %s", line),
        )
    return setup.run_dir


def continue_run(
    setup: ServerSetup,
    strategy: Strategy,
    recorder: RunDirRecorder,
    initial: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], int]:
    """The arrays and round to start from: round 1, or after the checkpoint of a
    resumed run (strategy, RNG, metrics rows and wall clock restored too)."""
    ckpt = setup.resumed
    if setup.cfg.resume:
        recorder.rows = checkpoint.rows_for_resume(setup.run_dir, ckpt.round if ckpt else 0)
    if ckpt is None:
        return initial, 1
    checkpoint.restore_strategy(strategy, ckpt)
    checkpoint.restore_rng(ckpt.rng)
    recorder.started -= ckpt.wall_seconds
    log(INFO, "fedge: resuming %s after round %d", setup.run_dir, ckpt.round)
    return ckpt.arrays, ckpt.round + 1


def privacy_summary(cfg: FedgeConfig, training: Training) -> dict[str, Any]:
    """What a reader of the model must know about its privacy (summary and manifest)."""
    out: dict[str, Any] = {"dp": cfg.dp, "secure_aggregation": cfg.secure_aggregation}
    if training.ledger is not None:
        out.update(training.ledger.summary())
    return out


def robustness_summary(cfg: FedgeConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"max_update_norm": cfg.max_update_norm or None}
    if cfg.attack != "none":
        out.update(attack=cfg.attack, attack_scale=cfg.attack_scale, attackers=cfg.num_attackers)
    return out


def save_final_model(
    setup: ServerSetup, arrays: dict[str, np.ndarray], privacy: dict[str, Any]
) -> None:
    with torch.no_grad():
        state = setup.model.state_dict()
    rundir.save_model(setup.run_dir, arrays, state, {**model_meta(setup), "privacy": privacy})
