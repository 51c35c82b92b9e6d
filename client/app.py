"""The PyTorch ClientApp: Flower messages in, local training and evaluation out."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.attacks import flip_labels, is_attacker, poison_update
from client.dp import DpSgd, train_head_local_dp
from client.mods import train_mod
from client.numpy_head import HEAD_KEYS, check_head_arrays
from client.numpy_trainer import train_head_numpy
from client.session import PARTITION_ID, ClientSession, open_session
from client.statistics import handle_statistics, wants_statistics
from client.trainer import TrainSettings, evaluate_head, train_end_to_end, train_head
from fedge.config import FedgeConfig, from_run_config
from fedge.models.fingerprint import check_fingerprint
from fedge.models.model import (
    FedgeModel,
    load_trainable_state,
    trainable_state,
)
from fedge.records import (
    ARRAYS,
    CLASS_NAMES,
    CONFIG,
    FINGERPRINT,
    METRICS,
    NUM_EXAMPLES,
    SKIPPED_FILES,
    from_record,
    to_record,
)


@dataclass
class Prepared:
    """This client's session, the model holding the server's parameters, the
    round's config, and the map from local label ids to the server's classes."""

    session: ClientSession
    model: FedgeModel
    config: ConfigRecord
    label_map: np.ndarray
    num_classes: int


def _prepare(content: RecordDict, context: Context, cfg: FedgeConfig) -> Prepared:
    config: ConfigRecord = content[CONFIG]
    session = open_session(cfg, context.node_config)
    check_fingerprint(
        str(config[FINGERPRINT]), session.loaded.fingerprint, session.loaded.describe()
    )
    server_classes = [str(c) for c in config[CLASS_NAMES]]  # type: ignore[union-attr]
    model = session.model(len(server_classes))
    load_trainable_state(model, from_record(content[ARRAYS]))
    return Prepared(session, model, config, session.label_map(server_classes), len(server_classes))


def _partition_id(context: Context) -> int | None:
    pid = context.node_config.get(PARTITION_ID)
    return None if pid is None else int(pid)  # type: ignore[arg-type]


def train_reply(content: RecordDict, context: Context, cfg: FedgeConfig) -> RecordDict:
    """Train on this client's data from the server's parameters in ``content``;
    return the reply content: the trained parameters and the round's metrics."""
    start = time.perf_counter()
    p = _prepare(content, context, cfg)
    session, model, config, label_map = p.session, p.model, p.config, p.label_map
    session.require_training_data()
    received = from_record(content[ARRAYS])
    server_round = int(config.get("server-round", 0))  # type: ignore[arg-type]
    settings = TrainSettings.from_config(cfg, float(config.get("proximal-mu", 0.0)))  # type: ignore[arg-type]
    order_seed = (cfg.seed, server_round, session.client_id)
    attacker = is_attacker(cfg, _partition_id(context))
    flip = attacker and cfg.attack == "label-flip"
    skipped = session.data.skipped_files
    privacy: dict[str, float] = {}
    if session.uses_embeddings:
        train = session.train_embeddings()
        skipped += train.skipped
        labels = label_map[train.y]
        labels = flip_labels(labels, p.num_classes) if flip else labels
        if cfg.dp == "local":
            result, privacy = train_head_local_dp(
                model.head,
                train.x,
                labels,
                settings,
                DpSgd.from_config(cfg),
                state=context.state,
                device=session.device,
            )
        elif session.device.type == "cpu" and cfg.head in HEAD_KEYS:
            # The numpy trainer makes the same updates (tests/test_numpy_trainer.py)
            # without PyTorch's per-step overhead, which dominates on a small head.
            params = check_head_arrays(cfg.head, trainable_state(model))
            result = train_head_numpy(
                cfg.head, params, train.x, labels, settings, order_seed=order_seed
            )
            load_trainable_state(model, params)
        else:
            result = train_head(
                model.head, train.x, labels, settings, order_seed=order_seed, device=session.device
            )
    else:
        data = session.data.train
        labels = label_map[data.labels]
        labels = flip_labels(labels, p.num_classes) if flip else labels
        result = train_end_to_end(
            model, data, labels, settings, order_seed=order_seed, device=session.device
        )
        skipped += len(data) - result.num_examples  # images that could not be read
    trained = trainable_state(model)
    if attacker:
        rng = np.random.default_rng([cfg.seed, server_round, session.client_id])
        trained = poison_update(trained, received, cfg.attack, cfg.attack_scale, rng)
    metrics = MetricRecord(
        {
            # Central DP's accounting needs equal weights: every update counts once.
            NUM_EXAMPLES: 1 if cfg.dp == "central" else result.num_examples,
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "train-seconds": result.seconds,
            "embed-seconds": session.embed_seconds,
            "client-seconds": time.perf_counter() - start,
            SKIPPED_FILES: skipped,
            **privacy,
        }
    )
    return RecordDict({ARRAYS: to_record(trained), METRICS: metrics})


def handle_train(msg: Message, context: Context, cfg: FedgeConfig) -> Message:
    return Message(train_reply(msg.content, context, cfg), reply_to=msg)


def handle_evaluate(msg: Message, context: Context, cfg: FedgeConfig) -> Message:
    p = _prepare(msg.content, context, cfg)
    test = p.session.test_embeddings(p.model.backbone)
    result = evaluate_head(
        p.model.head, test.x, p.label_map[test.y], p.num_classes, p.session.device
    )
    metrics = MetricRecord(
        {
            "num-examples": result.num_examples,
            "loss": result.loss,
            "accuracy": result.accuracy,
            "confusion": result.confusion.reshape(-1).astype(int).tolist(),
        }
    )
    return Message(RecordDict({METRICS: metrics}), reply_to=msg)


def build_client_app(cfg: FedgeConfig | None = None) -> ClientApp:
    """A ClientApp for ``cfg``, or (None) for the run config Flower provides."""
    client_app = ClientApp()

    def config_of(context: Context) -> FedgeConfig:
        return cfg if cfg is not None else from_run_config(context.run_config)

    @client_app.train(mods=[train_mod])
    def train(msg: Message, context: Context) -> Message:
        if wants_statistics(msg):
            return handle_statistics(msg, context, config_of(context))
        return handle_train(msg, context, config_of(context))

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, context, config_of(context))

    return client_app


app = build_client_app()
