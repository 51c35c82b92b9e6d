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
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from simulations.inprocess import InProcessGrid, run_inprocess_simulation


def _counting_app() -> ClientApp:
    """Replies with its partition id, how often it was called, and arrays + 1."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        calls = int(context.state.config_records.get("s", ConfigRecord({"n": 0}))["n"]) + 1
        context.state["s"] = ConfigRecord({"n": calls})
        msg.content["config"]["mutated"] = True  # must not reach the server's record
        weights = msg.content["arrays"]["w"].numpy() + 1
        metrics = MetricRecord(
            {
                "num-examples": 1,
                "partition": int(context.node_config["partition-id"]),
                "partitions": int(context.node_config["num-partitions"]),
                "calls": calls,
            }
        )
        content = RecordDict({"arrays": ArrayRecord({"w": Array(weights)}), "metrics": metrics})
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        raise RuntimeError("evaluation is broken on purpose")

    return app


def _record() -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord({"w": Array(np.zeros(3, np.float32))}), "config": ConfigRecord({})}
    )


def test_nodes_get_flower_contexts_that_persist_and_replies_address_the_server(flower_task):
    grid = InProcessGrid(_counting_app(), num_nodes=4, run_config={"k": 1}, seed=3)
    from flwr.supercore.run import Run

    grid.set_run(Run.create_empty(run_id=1))
    nodes = list(grid.get_node_ids())
    assert len(set(nodes)) == 4 and nodes == list(grid.get_node_ids())
    record = _record()
    msgs = [Message(record, n, MessageType.TRAIN) for n in nodes + nodes[:1]]
    replies = list(grid.send_and_receive(msgs))
    assert len(replies) == 5 and not any(r.has_error() for r in replies)
    metrics = [r.content["metrics"] for r in replies]
    assert sorted(m["partition"] for m in metrics[:4]) == [0, 1, 2, 3]
    assert all(m["partitions"] == 4 for m in metrics)
    assert metrics[4]["calls"] == 2  # the node's Context.state survived its first call
    for msg, reply in zip(msgs, replies, strict=True):
        assert reply.metadata.reply_to_message_id == msg.metadata.message_id
        assert reply.metadata.src_node_id == msg.metadata.dst_node_id
        assert reply.metadata.message_id
    assert "mutated" not in record["config"]  # each client got its own copy
    assert grid.context_of(nodes[0]).run_config == {"k": 1}


def test_a_raising_client_app_becomes_an_error_reply_like_flowers_worker(flower_task):
    grid = InProcessGrid(_counting_app(), num_nodes=2, run_config={})
    from flwr.supercore.run import Run

    grid.set_run(Run.create_empty(run_id=1))
    node = next(iter(grid.get_node_ids()))
    (reply,) = grid.send_and_receive([Message(_record(), node, MessageType.EVALUATE)])
    assert reply.has_error()
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "evaluation is broken on purpose" in reply.error.reason
    assert "ClientAppException" in reply.error.reason


def test_flowers_own_strategy_runs_a_server_app_on_the_inprocess_grid():
    seen: dict[str, object] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, min_available_nodes=6)
        initial = ArrayRecord({"w": Array(np.zeros(3, np.float32))})
        result = strategy.start(grid, initial, num_rounds=3)
        seen["w"] = result.arrays["w"].numpy()
        seen["run_config"] = dict(context.run_config)

    run_inprocess_simulation(server, _counting_app(), 6, {"num-rounds": 3}, seed=1)
    np.testing.assert_allclose(seen["w"], np.full(3, 3.0))  # +1 per round, averaged
    assert seen["run_config"] == {"num-rounds": 3}
