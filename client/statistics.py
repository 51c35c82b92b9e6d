"""The client side of the closed-form head: sufficient statistics of its
training embeddings instead of a trained head (see :mod:`fedge.closed_form`)."""

from __future__ import annotations

import time

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from client.session import open_session
from fedge.closed_form import ClassStatistics, pack
from fedge.config import FedgeConfig
from fedge.models.fingerprint import check_fingerprint
from fedge.records import (
    CLASS_NAMES,
    CONFIG,
    FINGERPRINT,
    METRICS,
    STATISTICS,
    STATISTICS_ORIGIN,
    to_record,
)


def wants_statistics(msg: Message) -> bool:
    """Whether a train message asks for statistics (the closed-form strategy)."""
    config = msg.content.config_records.get(CONFIG)
    return config is not None and STATISTICS in config


def handle_statistics(msg: Message, context: Context, cfg: FedgeConfig) -> Message:
    """Reply with per-class counts and sums and the Gram matrix of the embeddings."""
    start = time.perf_counter()
    config: ConfigRecord = msg.content[CONFIG]
    session = open_session(cfg, context.node_config)
    check_fingerprint(
        str(config[FINGERPRINT]), session.loaded.fingerprint, session.loaded.describe()
    )
    session.require_training_data()
    classes = [str(c) for c in config[CLASS_NAMES]]  # type: ignore[union-attr]
    label_map = session.label_map(classes)
    train = session.train_embeddings()
    origin = None
    if STATISTICS_ORIGIN in msg.content.array_records:
        origin = msg.content[STATISTICS_ORIGIN][STATISTICS_ORIGIN].numpy()
    stats = ClassStatistics.of(train.x, label_map[train.y], len(classes), origin)
    metrics = MetricRecord(
        {
            "num-examples": stats.num_samples,
            "embed-seconds": session.embed_seconds,
            "client-seconds": time.perf_counter() - start,
            "skipped-files": session.data.skipped_files + train.skipped,
        }
    )
    arrays = to_record(pack(stats, str(config[STATISTICS])))
    return Message(RecordDict({STATISTICS: arrays, METRICS: metrics}), reply_to=msg)
