"""Where the time of one simulated client update goes, measured piece by piece.

Flower's Ray path handles one client update as: the strategy's message is
stored in the LinkState; a thread sweeps every node for undelivered messages
(then waits 0.1 s); a worker thread hands the message, the node's Context and
the ClientApp to a Ray actor (serialized into the actor's process and back);
the reply is stored in the LinkState; the Grid polls for replies (every
0.1 s). Each function here times one of those pieces in isolation, with a
no-op ClientApp where the ClientApp is not the subject, so the per-update
overhead can be split into parts and compared with the in-process Grid.
"""

from __future__ import annotations

import logging
import pickle
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

HEAD_FLOATS = 12_810  # linear head on MobileNetV2, 10 classes


def head_record(floats: int = HEAD_FLOATS) -> ArrayRecord:
    return ArrayRecord({"head": Array(np.zeros(floats, dtype=np.float32))})


def noop_client_app() -> ClientApp:
    """A ClientApp that answers at once with the arrays it got."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        content = RecordDict(
            {"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 1})}
        )
        return Message(content, reply_to=msg)

    return app


def exchange_server_app(
    per_round: int, rounds: int, record: ArrayRecord, out: dict[str, Any]
) -> ServerApp:
    """A ServerApp that sends ``per_round`` train messages per round and times
    each round's send-and-receive (``out['round_seconds']``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        while len(nodes := list(grid.get_node_ids())) < per_round:  # Ray: nodes register late
            time.sleep(0.1)
        rng = random.Random(0)
        times, replies_seen = [], 0
        for rnd in range(1, rounds + 1):
            config = ConfigRecord({"server-round": rnd})
            messages = [
                Message(RecordDict({"arrays": record, "config": config}), n, MessageType.TRAIN)
                for n in rng.sample(nodes, per_round)
            ]
            start = time.perf_counter()
            replies = list(grid.send_and_receive(messages))
            times.append(time.perf_counter() - start)
            replies_seen += sum(not r.has_error() for r in replies)
        out["round_seconds"] = times
        out["replies"] = replies_seen

    return app


def engine_per_update(
    backend: str,
    num_nodes: int,
    per_round: int,
    rounds: int = 5,
    client_app: ClientApp | None = None,
    backend_config: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Milliseconds per update of a whole exchange with a no-op ClientApp
    (rounds after the first, which starts actors), for ``ray`` or ``inprocess``."""
    out: dict[str, Any] = {}
    server = exchange_server_app(per_round, rounds, head_record(), out)
    client = client_app or noop_client_app()
    start = time.perf_counter()
    if backend == "ray":
        from flwr.simulation import run_simulation

        logging.getLogger("flwr").setLevel(logging.WARNING)
        run_simulation(
            server_app=server,
            client_app=client,
            num_supernodes=num_nodes,
            backend_config=backend_config
            or {"client_resources": {"num_cpus": 1}, "init_args": {"include_dashboard": False}},
        )
    else:
        from simulations.inprocess import run_inprocess_simulation

        run_inprocess_simulation(server, client, num_nodes)
    total = time.perf_counter() - start
    steady = out["round_seconds"][1:] or out["round_seconds"]
    return {
        "ms_per_update": 1000 * sum(steady) / (len(steady) * per_round),
        "first_round_s": out["round_seconds"][0],
        "total_s": total,
        "replies": out["replies"],
    }


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``fn()``."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def serialization_ms(message: Message, context: Context, app: ClientApp) -> float:
    """What one Ray call ships: (ClientApp loader, message, cid, context) to the
    actor and (cid, reply, context) back, pickled and unpickled as Ray does."""
    from ray import cloudpickle

    def loader() -> ClientApp:
        return app

    reply = Message(RecordDict({"arrays": message.content["arrays"]}), reply_to=message)

    def round_trip() -> None:
        pickle.loads(cloudpickle.dumps((loader, message, "0", context)))
        pickle.loads(cloudpickle.dumps(("0", reply, context)))

    return 1000 * _timed(round_trip, 50)


def ray_actor_ms(message: Message, context: Context, calls: int = 200) -> dict[str, float]:
    """One Flower ``ClientAppActor`` call with a no-op ClientApp: latency of a
    call (one at a time) and time per call with two actors busy at once."""
    import ray
    from flwr.simulation.ray_transport.ray_actor import ClientAppActor

    app = noop_client_app()

    def loader() -> ClientApp:
        return app

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        actors = [ClientAppActor.options(num_cpus=1).remote() for _ in range(2)]
        ray.get([a.run.remote(loader, message, "0", context) for a in actors])  # warm up
        one = _timed(lambda: ray.get(actors[0].run.remote(loader, message, "0", context)), calls)
        start = time.perf_counter()
        pending = [actors[i % 2].run.remote(loader, message, "0", context) for i in range(calls)]
        ray.get(pending)
        both = (time.perf_counter() - start) / calls
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()
    return {"latency_ms": 1000 * one, "two_actors_ms_per_call": 1000 * both}


def linkstate_ms(num_nodes: int, per_round: int) -> dict[str, float]:
    """Flower's in-memory LinkState for one exchange of ``per_round`` messages
    among ``num_nodes`` nodes: push, the delivery thread's sweep over every
    node (one sweep collects them all), storing replies and pulling them."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.proto.task_pb2 import Task  # type: ignore[attr-defined]
    from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.superlink.federation import NoOpFederationManager
    from flwr.superlink.grid import InMemoryGrid

    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    state = factory.state()
    run = Run.create_empty(run_id=7)
    run.primary_task_id = 1
    run.federation_id = NOOP_FEDERATION_ID
    state.run_ids[run.run_id] = RunRecord(run=run)  # type: ignore[attr-defined]
    state.task_store[1] = Task(task_id=1, run_id=run.run_id)  # type: ignore[attr-defined]
    mapping = _register_nodes(num_nodes, factory)
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, SUPERLINK_NODE_ID
    nodes = random.Random(0).sample(list(mapping), per_round)
    record = RecordDict({"arrays": head_record(), "config": ConfigRecord({})})
    messages = [Message(record, n, MessageType.TRAIN) for n in nodes]

    t0 = time.perf_counter()
    ids = list(grid.push_messages(messages))
    t1 = time.perf_counter()
    delivered = []
    for node in mapping:  # what add_messages_to_queue does each 0.1 s
        delivered += state.get_message_ins(node_id=node, limit=1)
    t2 = time.perf_counter()
    for msg in delivered:
        reply = Message(RecordDict({"arrays": msg.content["arrays"]}), reply_to=msg)
        reply.metadata.__dict__["_message_id"] = f"r-{msg.metadata.message_id}"
        state.store_message_res(reply)
    t3 = time.perf_counter()
    pulled = list(grid.pull_messages(ids))
    t4 = time.perf_counter()
    assert len(pulled) == per_round, (len(pulled), per_round)
    return {
        "push_ms": 1000 * (t1 - t0) / per_round,
        "sweep_ms": 1000 * (t2 - t1) / per_round,
        "store_reply_ms": 1000 * (t3 - t2) / per_round,
        "pull_ms": 1000 * (t4 - t3) / per_round,
        "sweep_total_s": t2 - t1,
    }
