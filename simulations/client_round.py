"""One client round (train, then evaluate) through the app's ClientApp, in
this process, for measuring a client: ``python -m simulations.client_round``.

Torch-free unless ``--runtime torch``: it runs in the edge environment too.
Prints one JSON object: wall seconds per round, peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from client.dispatch import build_dispatching_app
from fedge.config import FedgeConfig
from fedge.records import ARRAYS, CLASS_NAMES, CONFIG, FINGERPRINT, METRICS, to_record


def _ask(
    app: Any, context: Context, head: dict[str, np.ndarray], config: ConfigRecord, kind: str
) -> RecordDict:
    """Send the head and the round's config as a ``kind`` message; the reply."""
    msg = Message(
        RecordDict({ARRAYS: to_record(head), CONFIG: config}), dst_node_id=1, message_type=kind
    )
    msg.metadata.__dict__["_message_id"] = f"{kind}-1"  # what the SuperLink assigns
    reply = app(msg, context)
    if reply.has_error():
        raise RuntimeError(reply.error.reason)
    return reply.content


def run_rounds(args: argparse.Namespace) -> dict[str, object]:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    values = json.loads(Path(args.config).read_text())
    cfg = FedgeConfig.from_mapping({**values, "cache-dir": args.cache_dir})
    with np.load(args.head) as z:
        head = {k: z[k] for k in z.files}
    node = {"data-path": args.data_path, "runtime": args.runtime}
    context = Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config={})
    app = build_dispatching_app(cfg)
    seconds, accuracy = [], 0.0
    for rnd in range(1, args.rounds + 1):
        config = ConfigRecord(
            {FINGERPRINT: args.fingerprint, CLASS_NAMES: args.classes, "server-round": rnd}
        )
        start = time.perf_counter()
        trained = _ask(app, context, head, config, MessageType.TRAIN)
        head = {k: v.numpy() for k, v in trained[ARRAYS].items()}
        evaluated = _ask(app, context, head, config, MessageType.EVALUATE)
        seconds.append(time.perf_counter() - start)
        accuracy = float(evaluated[METRICS]["accuracy"])
    return {
        "runtime": args.runtime,
        "round_seconds": seconds,
        "local_accuracy": accuracy,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec,
    unlike ru_maxrss, which a child inherits from a large parent at fork."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", required=True, help="node config runtime: torch, edge, ...")
    p.add_argument("--config", required=True, help="JSON of config keys")
    p.add_argument("--head", required=True, help=".npz of the head's starting arrays")
    p.add_argument("--data-path", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--fingerprint", required=True)
    p.add_argument("--classes", nargs="+", required=True)
    p.add_argument("--rounds", type=int, default=2)
    print(json.dumps(run_rounds(p.parse_args())))


if __name__ == "__main__":
    main()
