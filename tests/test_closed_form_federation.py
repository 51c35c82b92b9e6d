"""The closed-form strategy in real (in-process) federations of the real ClientApp."""

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from fedge import rundir
from fedge.cli.display import QuietDisplay
from fedge.closed_form import ClassStatistics, solve_head, triangle_size
from fedge.config import FedgeConfig
from fedge.data.federated import simulated_client
from fedge.embeddings.cache import embed_subset
from fedge.models.model import load_backbone_for
from simulations.runner import run_simulation
from tests.conftest import tiny_config_values

DIM, CLASSES = 512, 3  # resnet18 embeddings, three colours


def _run(color_folder, tmp_path, **extra):
    values = tiny_config_values(
        color_folder,
        **{
            "simulation-backend": "inprocess",
            "partitioner": "dirichlet",
            "dirichlet-alpha": 0.3,
            "run-dir": str(tmp_path / "run"),
            **extra,
        },
    )
    cfg = FedgeConfig.from_mapping(values)
    run = run_simulation(cfg, display=QuietDisplay())
    return cfg, run


def _close(actual, desired, tol):
    """Relative Frobenius distance: float32 messages, an ill-conditioned covariance."""
    return np.linalg.norm(actual - desired) <= tol * np.linalg.norm(desired)


def _pooled_head(cfg):
    """The closed-form head of all clients' training samples on one machine."""
    loaded = load_backbone_for(cfg)
    total = ClassStatistics.zeros(CLASSES, DIM)
    for pid in range(cfg.num_clients):
        train = simulated_client(cfg, pid, cfg.num_clients).train
        x = embed_subset(cfg, loaded, train, torch.device("cpu"))
        total = total + ClassStatistics.of(x, train.labels, CLASSES)
    return solve_head(total, cfg.closed_form_solver, cfg.closed_form_shrinkage), total


def test_one_round_gives_the_head_a_single_machine_would_solve(color_folder, tmp_path):
    cfg, run = _run(color_folder, tmp_path, strategy="closed-form", **{"num-rounds": 5})
    rows = rundir.read_metrics(run)
    assert len(rows) == 1 and rows[0]["num_clients"] == 3  # then the strategy stops the run
    head = load_file(run / "model" / "head.safetensors")
    (weight, bias), total = _pooled_head(cfg)
    assert _close(head["head.weight"], weight, 1e-3) and _close(head["head.bias"], bias, 1e-3)
    assert rows[0]["accuracy"] > 0.9
    floats = triangle_size(DIM) + CLASSES * DIM + CLASSES
    assert floats * 4 <= rows[0]["bytes_up"] / 3 < floats * 4 + 1000  # honest: d(d+1)/2 floats
    assert rows[0]["bytes_down"] < 3 * 40_000  # the head does not travel down for statistics
    assert total.num_samples == 3 * 32


def test_a_partial_fraction_sums_each_client_once_over_rounds(color_folder, tmp_path):
    cfg, run = _run(
        color_folder,
        tmp_path,
        strategy="closed-form",
        **{"num-clients": 4, "fraction-train": 0.5, "num-rounds": 9},
    )
    rows = rundir.read_metrics(run)
    assert [r["num_clients"] for r in rows] == [2, 2]  # four clients, two rounds, then done
    head = load_file(run / "model" / "head.safetensors")
    (weight, _), _ = _pooled_head(cfg)
    assert _close(head["head.weight"], weight, 1e-3)


def test_factor_form_sends_less_and_solves_the_same_head(color_folder, tmp_path):
    gram = {"closed-form-gram": "factor"}
    cfg, run = _run(color_folder, tmp_path, strategy="closed-form", **gram)
    (row,) = rundir.read_metrics(run)
    assert row["bytes_up"] / 3 < triangle_size(DIM) * 4 / 3  # 32 samples: d x 32 floats
    head = load_file(run / "model" / "head.safetensors")
    (weight, _), _ = _pooled_head(cfg)
    assert _close(head["head.weight"], weight, 1e-3)


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox"])
def test_init_closed_form_then_the_strategy_continues_from_that_head(
    color_folder, tmp_path, strategy
):
    cfg, run = _run(
        color_folder, tmp_path, strategy=strategy, init="closed-form", **{"num-rounds": 3}
    )
    rows = rundir.read_metrics(run)
    assert [r["round"] for r in rows] == [1, 2, 3]
    head_bytes = (DIM * CLASSES + CLASSES) * 4
    assert rows[0]["bytes_up"] / 3 > triangle_size(DIM) * 4  # round 1: statistics
    assert all(head_bytes <= r["bytes_up"] / 3 < head_bytes + 1000 for r in rows[1:])
    assert rows[0]["accuracy"] > 0.9 and rows[-1]["accuracy"] > 0.9


def test_closed_form_needs_a_linear_head_on_frozen_embeddings():
    from fedge.config import ConfigError

    with pytest.raises(ConfigError, match="head=linear and unfreeze-last=0"):
        FedgeConfig.from_mapping({"strategy": "closed-form", "head": "mlp"})
    with pytest.raises(ConfigError, match="unfreeze-last"):
        FedgeConfig.from_mapping({"init": "closed-form", "unfreeze-last": 1})
