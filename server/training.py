"""How a run trains: the strategy, the training step and the privacy ledger a config asks for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedge.config import FedgeConfig
from server.privacy import (
    CentralDpLedger,
    LocalDpLedger,
    PrivacyLedger,
    central_accountant,
    central_dp_strategy,
)
from server.rounds import PlainTraining, Preparer, TrainStep
from server.secagg import SecureTraining
from server.strategies import build_strategy
from server.validation import UpdateRules

# Slack for float32 rounding when checking that a client clipped its update.
_CLIP_TOLERANCE = 1e-4


@dataclass
class Training:
    strategy: Strategy
    step: TrainStep
    ledger: PrivacyLedger | None


def update_rules(cfg: FedgeConfig, dtypes: Mapping[str, str] | None = None) -> UpdateRules:
    """The checks on each update. Under central DP (without secure aggregation) an
    update longer than dp-clipping-norm is refused too: a client that skipped
    clipping would void the privacy guarantee for everyone."""
    limit = cfg.max_update_norm
    if cfg.dp == "central":
        clip = cfg.dp_clipping_norm * (1 + _CLIP_TOLERANCE)
        limit = min(limit, clip) if limit > 0 else clip
    return UpdateRules(max_update_norm=limit, dtypes=dtypes)


def build_training(
    grid: Grid,
    cfg: FedgeConfig,
    timeout: float = 3600.0,
    min_replies: int = 1,
    prepare: Preparer | None = None,
    dtypes: Mapping[str, str] | None = None,
) -> Training:
    """``prepare``: what runs for a round's nodes before they get their train messages;
    ``dtypes``: the trainable arrays' dtypes in the model, which updates must have."""
    strategy = build_strategy(cfg)
    ledger: PrivacyLedger | None = None
    if cfg.dp == "local":
        ledger = LocalDpLedger(cfg)
    if cfg.secure_aggregation:
        if cfg.dp == "central":
            ledger = CentralDpLedger(cfg, central_accountant(cfg))
        dp = ledger if isinstance(ledger, CentralDpLedger) else None
        return Training(
            strategy, SecureTraining(grid, strategy, cfg, dp, min_replies, prepare), ledger
        )
    if cfg.dp == "central":
        accountant = central_accountant(cfg)
        wrapper = central_dp_strategy(cfg, strategy, accountant)
        strategy, ledger = wrapper, CentralDpLedger(cfg, accountant, holder=wrapper)
    rules = update_rules(cfg, dtypes)
    plain = PlainTraining(grid, strategy, rules, timeout, min_replies, prepare)
    return Training(strategy, plain, ledger)
