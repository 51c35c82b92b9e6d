"""The edge ClientApp: Flower messages in, a numpy head trained on embeddings
from an exported backbone out. No PyTorch: numpy, flwr and one inference
runtime. Replies have exactly the layout of the PyTorch client's
(``client/app.py``), so the server cannot tell them apart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.artifact_store import ArtifactStore, StoredArtifact
from client.attacks import is_attacker
from client.edge_session import EdgeSession, open_edge_session
from client.kinds import artifact_root, client_kind
from client.local_data import PARTITION_ID, label_map
from client.local_training import TrainSettings
from client.numpy_head import Params, check_head_arrays
from client.numpy_trainer import evaluate_head_numpy, train_head_numpy
from client.runtimes import artifact_format, choose_runtime
from fedge import delivery
from fedge.artifacts import ArtifactInfo
from fedge.config import FedgeConfig, from_run_config
from fedge.errors import FedgeError
from fedge.records import ARRAYS, CLASS_NAMES, CONFIG, FINGERPRINT, METRICS, from_record, to_record


class EdgeUnsupported(FedgeError, ValueError):
    """A run setting the edge client cannot follow."""


class BackboneMissing(FedgeError, RuntimeError):
    """The edge client has no artifact of the server's backbone."""


def _runtime(cfg: FedgeConfig, node_config: Mapping[str, object]) -> str:
    return choose_runtime(client_kind(cfg, node_config).edge_runtime or cfg.edge_runtime)


def _artifact(cfg: FedgeConfig, context: Context, fingerprint: str, runtime: str) -> StoredArtifact:
    fmt = artifact_format(runtime)
    found = ArtifactStore(artifact_root(cfg, context.node_config)).find(fingerprint, fmt)
    if found is None:
        raise BackboneMissing(
            f"this edge client ({runtime}) holds no {fmt} artifact of the server's backbone "
            f"{fingerprint[:16]}; the server delivers it before a node's first round "
            "(query.backbone). Is the server's fedge as new as this client's?"
        )
    return found


def check_edge_can_train(cfg: FedgeConfig, node_config: Mapping[str, object]) -> None:
    """Refuse the privacy and attack settings this client cannot honour, before it
    trains: an edge client that trained anyway would send an unclipped, un-noised
    update in the clear, and the run would report a privacy or attack it did not have."""
    pid = node_config.get(PARTITION_ID)
    refused = [
        *([f"dp={cfg.dp}"] if cfg.dp != "none" else []),
        *(["secure-aggregation=true"] if cfg.secure_aggregation else []),
        *(
            [f"attack={cfg.attack}"]
            if is_attacker(cfg, None if pid is None else int(pid))  # type: ignore[arg-type]
            else []
        ),
    ]
    if refused:
        raise EdgeUnsupported(
            f"this edge client cannot train with {', '.join(refused)}: edge clients have no "
            "DP-SGD, no update clipping, no SecAgg+ and no simulated attacks. Run this node "
            "with runtime=torch, or set dp=none, secure-aggregation=false and "
            "malicious-fraction=0."
        )


@dataclass
class EdgePrepared:
    session: EdgeSession
    params: Params
    config: ConfigRecord
    label_map: np.ndarray
    num_classes: int


def _prepare(content: RecordDict, context: Context, cfg: FedgeConfig) -> EdgePrepared:
    if cfg.unfreeze_last:
        raise EdgeUnsupported(
            f"unfreeze-last={cfg.unfreeze_last}: edge clients train the head only "
            "(their backbone is a fixed exported file). Use unfreeze-last=0, or run "
            "this node with runtime=torch."
        )
    config: ConfigRecord = content[CONFIG]
    runtime = _runtime(cfg, context.node_config)
    artifact = _artifact(cfg, context, str(config[FINGERPRINT]), runtime)
    session = open_edge_session(cfg, context.node_config, runtime, artifact)
    server_classes = [str(c) for c in config[CLASS_NAMES]]  # type: ignore[union-attr]
    params = check_head_arrays(cfg.head, from_record(content[ARRAYS]))
    mapping = label_map(session.data.classes, server_classes)
    return EdgePrepared(session, params, config, mapping, len(server_classes))


def train_reply(content: RecordDict, context: Context, cfg: FedgeConfig) -> RecordDict:
    """Train the received head on this client's embeddings; the reply content."""
    start = time.perf_counter()
    check_edge_can_train(cfg, context.node_config)
    p = _prepare(content, context, cfg)
    server_round = int(p.config.get("server-round", 0))  # type: ignore[arg-type]
    settings = TrainSettings.from_config(cfg, float(p.config.get("proximal-mu", 0.0)))  # type: ignore[arg-type]
    train = p.session.train_embeddings()
    result = train_head_numpy(
        cfg.head,
        p.params,
        train.x,
        p.label_map[train.y],
        settings,
        order_seed=(cfg.seed, server_round, p.session.client_id),
    )
    metrics = MetricRecord(
        {
            "num-examples": result.num_examples,
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "train-seconds": result.seconds,
            "embed-seconds": p.session.embed_seconds,
            "client-seconds": time.perf_counter() - start,
            "skipped-files": p.session.data.skipped_files + train.skipped,
        }
    )
    return RecordDict({ARRAYS: to_record(p.params), METRICS: metrics})


def evaluate_reply(content: RecordDict, context: Context, cfg: FedgeConfig) -> RecordDict:
    p = _prepare(content, context, cfg)
    test = p.session.test_embeddings()
    result = evaluate_head_numpy(cfg.head, p.params, test.x, p.label_map[test.y], p.num_classes)
    metrics = MetricRecord(
        {
            "num-examples": result.num_examples,
            "loss": result.loss,
            "accuracy": result.accuracy,
            "confusion": result.confusion.reshape(-1).astype(int).tolist(),
        }
    )
    return RecordDict({METRICS: metrics})


def backbone_reply(content: RecordDict, context: Context, cfg: FedgeConfig) -> RecordDict:
    """Answer the server's backbone status query, or keep a delivered artifact."""
    request = delivery.request_of(content)
    runtime = _runtime(cfg, context.node_config)
    fmt = artifact_format(runtime)
    store = ArtifactStore(artifact_root(cfg, context.node_config))
    if request["step"] == delivery.DELIVER:
        info = ArtifactInfo.from_json(str(request["info"]))
        stored = store.put(bytes(request["artifact"]), info)  # type: ignore[arg-type]
        return delivery.NodeStatus(runtime, fmt, stored.info.sha256).to_content()
    held = store.find(str(request["fingerprint"]), fmt)
    return delivery.NodeStatus(runtime, fmt, held.info.sha256 if held else "").to_content()


def build_edge_app(cfg: FedgeConfig | None = None) -> ClientApp:
    """The edge ClientApp for ``cfg``, or (None) for the run config Flower provides."""
    edge_app = ClientApp()

    def config_of(context: Context) -> FedgeConfig:
        return cfg if cfg is not None else from_run_config(context.run_config)

    @edge_app.train()
    def train(msg: Message, context: Context) -> Message:
        return Message(train_reply(msg.content, context, config_of(context)), reply_to=msg)

    @edge_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(evaluate_reply(msg.content, context, config_of(context)), reply_to=msg)

    @edge_app.query("backbone")
    def backbone(msg: Message, context: Context) -> Message:
        return Message(backbone_reply(msg.content, context, config_of(context)), reply_to=msg)

    return edge_app


app = build_edge_app()
