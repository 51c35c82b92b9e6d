"""A plain Flower-example-style app: the baseline of ``bench_time_to_accuracy``.

It trains the same head on the same data with the same settings as fedge's
default path, the way Flower's quickstart examples do it: every local epoch
runs the images through the (frozen) backbone again, and the whole model
(every floating-point tensor of its ``state_dict``: backbone weights and
BatchNorm statistics as well as the head) travels both ways each round and
is averaged by FedAvg. The server evaluates the whole model on the held-out
images each round. Only the cost differs from fedge's path, not the math:
with the backbone frozen and in eval mode, both compute the same embeddings
and the same head updates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from client.trainer import TrainSettings, train_end_to_end
from fedge.config import FedgeConfig
from fedge.data.federated import Subset, server_test, simulated_client
from fedge.device import resolve_device
from fedge.embeddings.extract import load_batch
from fedge.models.model import FedgeModel, build_model, load_backbone_for
from fedge.records import ARRAYS, CONFIG, METRICS, from_record, to_record
from server.rounds import RoundCallback, run_rounds


def full_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every floating-point tensor of the model: what a plain example sends."""
    return {
        k: v.detach().cpu().numpy().copy()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }


def load_full_state(model: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    model.load_state_dict(tensors, strict=False)


@torch.no_grad()
def accuracy_on_images(model: FedgeModel, data: Subset, device: torch.device) -> float:
    """Top-1 accuracy of the whole model, images through the backbone."""
    model.to(device).eval()
    correct = 0
    for start in range(0, len(data), 64):
        idx = data.indices[start : start + 64]
        images, ok = load_batch(data.source, idx, model.preprocessing)
        pred = model(torch.from_numpy(images[ok]).to(device)).argmax(1).cpu().numpy()
        correct += int((pred == data.source.labels[idx][ok]).sum())
    return correct / max(1, len(data))


def build_baseline_client_app(cfg: FedgeConfig) -> ClientApp:
    app = ClientApp()
    device = resolve_device(cfg.device)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        data = simulated_client(cfg, pid, int(context.node_config["num-partitions"]))
        model = build_model(cfg, len(data.classes))
        load_full_state(model, from_record(msg.content[ARRAYS]))
        server_round = int(msg.content[CONFIG].get("server-round", 0))  # type: ignore[arg-type]
        result = train_end_to_end(
            model,
            data.train,
            data.train.labels,
            TrainSettings.from_config(cfg),
            order_seed=(cfg.seed, server_round, pid),
            device=device,
        )
        metrics = MetricRecord({"num-examples": result.num_examples, "train-loss": result.loss})
        content = RecordDict({ARRAYS: to_record(full_state(model)), METRICS: metrics})
        return Message(content, reply_to=msg)

    return app


def build_baseline_server_app(
    cfg: FedgeConfig, callbacks: Sequence[RoundCallback] = ()
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        classes, test = server_test(cfg)
        model = build_model(cfg, len(classes), load_backbone_for(cfg))
        device = resolve_device(cfg.device)

        def central(_: int, arrays: object) -> dict[str, float]:
            load_full_state(model, from_record(arrays))  # type: ignore[arg-type]
            return {"accuracy": accuracy_on_images(model, test, device), "time": time.time()}

        strategy = FedAvg(
            fraction_train=cfg.fraction_train,
            fraction_evaluate=0.0,
            min_train_nodes=cfg.min_clients,
            min_available_nodes=cfg.min_clients,
        )
        run_rounds(
            grid,
            strategy,
            to_record(full_state(model)),
            num_rounds=cfg.num_rounds,
            train_config=ConfigRecord({}),
            evaluate_config=ConfigRecord({}),
            central_eval=central,
            callbacks=callbacks,
        )

    return app
