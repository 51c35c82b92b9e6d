"""Differential privacy on the client: central DP's clipping, local DP-SGD and its ledger."""

import sys

import numpy as np
import pytest
from flwr.app import MessageType, RecordDict

from client.app import build_client_app, handle_train
from client.dp import LEDGER_KEY, PrivacyBudgetExhausted, epsilon, load_ledger
from fedge.config import FedgeConfig
from fedge.extras import MissingExtra
from fedge.records import ARRAYS, BUDGET_EXHAUSTED, DP_EPSILON, DP_NEXT_EPSILON, from_record
from tests.conftest import client_context, tiny_config_values, train_message


def _norm(after, before):
    return float(np.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before)))


def _cfg(color_folder, **values):
    return FedgeConfig.from_mapping(tiny_config_values(color_folder, **values))


def test_central_dp_clients_clip_their_update_and_weigh_one(color_folder, flower_task):
    cfg = _cfg(color_folder, dp="central")
    msg, before = train_message(cfg, MessageType.TRAIN, config={"clipping_norm": 0.05})
    reply = build_client_app(cfg)(msg, client_context(cfg))
    assert not reply.has_error()
    assert _norm(from_record(reply.content[ARRAYS]), before) == pytest.approx(0.05, rel=1e-3)
    assert reply.content["metrics"]["num-examples"] == 1  # equal weights for the accountant


def test_without_a_clipping_norm_the_update_is_not_clipped(color_folder, flower_task):
    cfg = _cfg(color_folder)
    msg, before = train_message(cfg, MessageType.TRAIN)
    reply = build_client_app(cfg)(msg, client_context(cfg))
    assert _norm(from_record(reply.content[ARRAYS]), before) > 0.05


def test_local_dp_ledger_grows_across_rounds_and_matches_opacus(color_folder, flower_task):
    cfg = _cfg(color_folder, dp="local", **{"dp-noise-multiplier": 1.5})
    context = client_context(cfg)  # one client's context, kept across rounds
    msg, _ = train_message(cfg, MessageType.TRAIN)
    first = handle_train(msg, context, cfg).content["metrics"]
    second = handle_train(msg, context, cfg).content["metrics"]
    # 32 samples, batch 32: one Poisson step per epoch at rate 1, 2 epochs a round
    assert load_ledger(context.state) == [(1.5, 1.0, 4)]
    assert second[DP_EPSILON] == pytest.approx(epsilon([(1.5, 1.0, 4)], 1e-5))
    assert first[DP_EPSILON] == pytest.approx(epsilon([(1.5, 1.0, 2)], 1e-5))
    assert first[DP_NEXT_EPSILON] == pytest.approx(second[DP_EPSILON])
    assert 0 < first[DP_EPSILON] < second[DP_EPSILON]


def test_local_dp_refuses_a_round_past_the_target_before_training(color_folder, flower_task):
    budget = epsilon([(1.5, 1.0, 2)], 1e-5) + 0.01  # room for one round, not two
    cfg = _cfg(
        color_folder, dp="local", **{"dp-noise-multiplier": 1.5, "dp-target-epsilon": budget}
    )
    context = client_context(cfg)
    msg, _ = train_message(cfg, MessageType.TRAIN)
    handle_train(msg, context, cfg)
    with pytest.raises(PrivacyBudgetExhausted, match=BUDGET_EXHAUSTED):
        handle_train(msg, context, cfg)
    assert load_ledger(context.state) == [(1.5, 1.0, 2)]  # the refused round spent nothing


def test_dp_sgd_bounds_each_step_by_the_clipping_norm(color_folder, flower_task):
    """Per-sample clipping at C with (almost) no noise: with batches of the whole local
    set and plain SGD, the head moves at most lr x C per step; without DP it moves far more."""
    values = {"lr": 1.0, "momentum": 0.0}
    cfg = _cfg(
        color_folder,
        dp="local",
        **values,
        **{"dp-clipping-norm": 0.01, "dp-noise-multiplier": 1e-4},
    )
    msg, before = train_message(cfg, MessageType.TRAIN)
    dp_update = _norm(
        from_record(handle_train(msg, client_context(cfg), cfg).content[ARRAYS]), before
    )
    plain = _cfg(color_folder, **values)
    plain_update = _norm(
        from_record(handle_train(msg, client_context(plain), plain).content[ARRAYS]), before
    )
    steps = 2  # 2 epochs of one full batch
    assert 0.2 * steps * 0.01 < dp_update <= steps * 1.0 * 0.01 * 1.01
    assert plain_update > 10 * dp_update


def test_the_ledger_lives_in_the_context_state_only(color_folder, flower_task):
    cfg = _cfg(color_folder, dp="local")
    msg, _ = train_message(cfg, MessageType.TRAIN)
    handle_train(msg, client_context(cfg), cfg)
    fresh = RecordDict()
    handle_train(msg, client_context(cfg, state=fresh), cfg)
    assert LEDGER_KEY in fresh.config_records
    assert load_ledger(fresh) == [(1.0, 1.0, 2)]  # a new context starts a new ledger


def test_local_dp_without_opacus_names_the_package_to_install(
    color_folder, flower_task, monkeypatch
):
    """A Jetson installs JetPack's torch and plain fedge: no Opacus. (``None`` in
    ``sys.modules`` is how Python itself marks a module as not importable.)"""
    monkeypatch.setitem(sys.modules, "opacus", None)
    cfg = _cfg(color_folder, dp="local")
    context = client_context(cfg)
    msg, _ = train_message(cfg, MessageType.TRAIN)
    with pytest.raises(MissingExtra, match=r"dp=local .*pip install 'opacus>=1.6,<1.7'"):
        handle_train(msg, context, cfg)
    assert load_ledger(context.state) == []
