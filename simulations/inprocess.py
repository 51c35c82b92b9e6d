"""An in-process simulation backend: a Flower ``Grid`` that runs the real
``ClientApp`` in the server's own process, one message after another.

The ServerApp, its strategies and the ClientApp are Flower's objects, called
as Flower calls them: every simulated node has a ``Context`` (``node_config``
with ``partition-id`` and ``num-partitions``, a ``state`` kept across rounds,
the run config), instruction messages get ids and metadata as the SuperLink
gives them, and a ClientApp that raises becomes an error reply, as Flower's
simulation worker makes it. What it leaves out is the machinery that makes
Flower's engine general (Ray actors, serialization between processes, the
LinkState and its polling), which is what costs time per client update when a
client's work is a few milliseconds of head training.

Limits, by design: one process, so ClientApps run one at a time (no
``num-cpus``/``num-gpus`` resources, no isolation between clients beyond a
copy of each message's content), and ``timeout`` cannot interrupt a running
ClientApp. Use the Ray backend for heavy clients or a cluster.
"""

from __future__ import annotations

import copy
import pickle
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException
from flwr.common.constant import (
    NUM_PARTITIONS_KEY,
    PARTITION_ID_KEY,
    SUPERLINK_NODE_ID,
    ErrorCode,
)
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


def _node_ids(num_nodes: int, seed: int) -> list[int]:
    """Distinct random 63-bit node ids, as the SuperLink draws them, but seeded."""
    rng = random.Random(seed)
    ids: dict[int, None] = {}
    while len(ids) < num_nodes:
        node = rng.getrandbits(63)
        if node > SUPERLINK_NODE_ID:
            ids[node] = None
    return list(ids)


def error_reply(message: Message, exc: BaseException) -> Message:
    """The reply Flower's simulation worker sends when a ClientApp raises."""
    wrapped = ClientAppException(str(exc))
    reason = str(type(wrapped)) + ":<'" + str(wrapped) + "'>"
    error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason)
    return Message(error, reply_to=message)


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process.

    ``push_messages`` runs each message through the ClientApp at once and keeps
    the reply until ``pull_messages`` collects it.
    """

    def __init__(
        self,
        client_app: ClientApp,
        num_nodes: int,
        run_config: Mapping[str, Any],
        *,
        seed: int = 0,
        copy_messages: bool = True,
    ) -> None:
        self.client_app = client_app
        self.run_config = dict(run_config)
        self.copy_messages = copy_messages
        self._nodes = _node_ids(num_nodes, seed)
        self._partition = {node: i for i, node in enumerate(self._nodes)}
        self._contexts: dict[int, Context] = {}
        self._replies: dict[str, Message] = {}
        self._run: Run | None = None

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        if self._run is None:
            raise RuntimeError("InProcessGrid: no run set (call set_run first).")
        return Run(**vars(self._run))

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def context_of(self, node_id: int) -> Context:
        """The node's Context, made on its first message and kept across rounds."""
        context = self._contexts.get(node_id)
        if context is None:
            context = Context(
                run_id=self.run.run_id,
                node_id=node_id,
                node_config={
                    PARTITION_ID_KEY: self._partition[node_id],
                    NUM_PARTITIONS_KEY: len(self._nodes),
                },
                state=RecordDict(),
                run_config=dict(self.run_config),
            )
            self._contexts[node_id] = context
        return context

    def _execute(self, message: Message) -> Message:
        context = self.context_of(message.metadata.dst_node_id)
        received = message
        if self.copy_messages:  # the client must not share objects with the server
            content = pickle.loads(pickle.dumps(message.content))
            received = Message(content, metadata=copy.copy(message.metadata))
        try:
            reply = self.client_app(message=received, context=context)
        except Exception as exc:  # reported to the server, as Flower's worker does
            reply = error_reply(message, exc)
        reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids: list[str] = []
        for message in messages:
            if message.metadata.dst_node_id not in self._partition:
                raise ValueError(f"unknown destination node {message.metadata.dst_node_id}")
            if message.metadata.reply_to_message_id:
                raise ValueError("cannot push a reply message")
            message_id = str(uuid.uuid4())
            message.metadata.__dict__["_message_id"] = message_id
            self._replies[message_id] = self._execute(message)
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Run every message and return the replies (``timeout`` is not enforced:
        a ClientApp call cannot be interrupted in-process)."""
        return self.pull_messages(self.push_messages(messages))


@contextmanager
def _server_identity(run_id: int) -> Iterator[None]:
    """Messages built in the ServerApp take their source from TaskIdentity."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def run_inprocess_simulation(
    server_app: ServerApp,
    client_app: ClientApp,
    num_supernodes: int,
    run_config: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
) -> Context:
    """Run ``server_app`` against ``num_supernodes`` in-process nodes; return the
    ServerApp's context after the run."""
    run_id = random.Random(seed).getrandbits(63)
    grid = InProcessGrid(client_app, num_supernodes, run_config or {}, seed=seed)
    grid.set_run(Run.create_empty(run_id))
    context = Context(
        run_id=run_id,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=dict(run_config or {}),
    )
    with _server_identity(run_id):
        server_app(grid=grid, context=context)
    return context
