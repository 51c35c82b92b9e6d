"""Local differential privacy: DP-SGD on the head, with each client's own ledger.

Opacus trains the head on the cached embeddings with Poisson-sampled batches
(each sample joins a step with probability ``q = 1 / ceil(n / batch-size)``),
per-sample gradients clipped to ``dp-clipping-norm`` and Gaussian noise of
``dp-noise-multiplier x dp-clipping-norm`` added to their sum. Opacus's RDP
accountant turns the steps taken so far into epsilon at ``dp-delta``: an
example-level guarantee for this client's data, over all rounds it trained in.

The ledger (noise, sample rate, steps) lives in the client's Flower context
state, so it survives across rounds for as long as the SuperNode does. Noise
and sampling use torch's default generator, unseeded on purpose: a seed from
the run config would let the server predict, and remove, the noise.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import ConfigRecord, RecordDict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.trainer import TrainResult, TrainSettings, make_optimizer
from fedge.config import FedgeConfig
from fedge.errors import FedgeError
from fedge.extras import require_opacus
from fedge.records import BUDGET_EXHAUSTED, DP_EPSILON, DP_NEXT_EPSILON

LEDGER_KEY = "fedge.dp-sgd-ledger"
Step = tuple[float, float, int]  # (noise multiplier, sample rate, steps)


class PrivacyBudgetExhausted(FedgeError, RuntimeError):
    """Training one more round would take this client past dp-target-epsilon."""


@dataclass(frozen=True)
class DpSgd:
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    target_epsilon: float  # 0 = no limit

    @classmethod
    def from_config(cls, cfg: FedgeConfig) -> DpSgd:
        return cls(
            cfg.dp_noise_multiplier, cfg.dp_clipping_norm, cfg.dp_delta, cfg.dp_target_epsilon
        )


def load_ledger(state: RecordDict) -> list[Step]:
    record = state.config_records.get(LEDGER_KEY)
    if record is None:
        return []
    z, q, steps = record["z"], record["q"], record["steps"]
    return [(float(a), float(b), int(c)) for a, b, c in zip(z, q, steps, strict=True)]  # type: ignore[arg-type]


def save_ledger(state: RecordDict, ledger: list[Step]) -> None:
    state[LEDGER_KEY] = ConfigRecord(
        {
            "z": [float(z) for z, _, _ in ledger],
            "q": [float(q) for _, q, _ in ledger],
            "steps": [int(s) for _, _, s in ledger],
        }
    )


def epsilon(ledger: list[Step], delta: float) -> float:
    """Epsilon at ``delta`` after the DP-SGD steps in ``ledger`` (Opacus's RDP accountant)."""
    from opacus.accountants import RDPAccountant

    if not ledger:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = list(ledger)
    return float(accountant.get_epsilon(delta=delta))


def round_steps(num_examples: int, batch_size: int, epochs: int, noise: float) -> Step:
    """The ledger entry of one round: Opacus samples each of ``ceil(n/B)`` steps
    per epoch with rate ``1/ceil(n/B)``."""
    per_epoch = math.ceil(num_examples / batch_size)
    return (noise, 1.0 / per_epoch, epochs * per_epoch)


def check_budget(ledger: list[Step], next_round: Step, dp: DpSgd) -> None:
    """Refuse, before training, a round that would pass the target epsilon."""
    if dp.target_epsilon <= 0:
        return
    spent, after = epsilon(ledger, dp.delta), epsilon([*ledger, next_round], dp.delta)
    if after > dp.target_epsilon:
        raise PrivacyBudgetExhausted(
            f"{BUDGET_EXHAUSTED}: this client has spent epsilon {spent:.3f} (delta "
            f"{dp.delta:g}) and another round would reach {after:.3f} > dp-target-epsilon "
            f"{dp.target_epsilon:g}; it no longer trains. Raise dp-target-epsilon or "
            "dp-noise-multiplier, or train fewer steps (local-epochs, batch-size)."
        )


@contextlib.contextmanager
def _quiet_opacus() -> Iterator[None]:
    """Opacus warns that its RNG is not cryptographic (stated in the run's summary) and
    torch that no input needs a gradient (embeddings do not): both expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


def train_head_private(
    head: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    s: TrainSettings,
    dp: DpSgd,
    *,
    ledger: list[Step],
    device: torch.device,
) -> tuple[TrainResult, list[Step]]:
    """DP-SGD on embeddings ``x`` with labels ``y``; returns the result and the new ledger."""
    from opacus import PrivacyEngine

    if len(y) == 0:
        raise FedgeError("dp=local: this client has no readable training samples to train on.")
    step = round_steps(len(y), s.batch_size, s.epochs, dp.noise_multiplier)
    check_budget(ledger, step, dp)
    start = time.perf_counter()
    head.to(device).train()
    data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    params = [p for p in head.parameters() if p.requires_grad]
    loss_sum, correct, seen = 0.0, 0, 0
    with _quiet_opacus():
        engine = PrivacyEngine(accountant="rdp")
        engine.accountant.history = list(ledger)
        model, optimizer, loader = engine.make_private(
            module=head,
            optimizer=make_optimizer(params, s),
            data_loader=DataLoader(data, batch_size=s.batch_size),
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
        )
        try:
            for _ in range(s.epochs):
                for xb, yb in loader:
                    xb, yb = xb.to(device), yb.to(device)
                    logits = model(xb)
                    loss = nn.functional.cross_entropy(logits, yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()  # also on empty Poisson batches: noise only, and counted
                    if len(yb):
                        loss_sum += loss.item() * len(yb)
                        correct += int((logits.argmax(1) == yb).sum())
                        seen += len(yb)
        finally:
            model._close()  # remove Opacus's hooks from the head
    head.eval()
    new_ledger = [(float(z), float(q), int(n)) for z, q, n in engine.accountant.history]
    result = TrainResult(
        loss_sum / max(1, seen), correct / max(1, seen), len(y), time.perf_counter() - start
    )
    return result, new_ledger


def train_head_local_dp(
    head: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    s: TrainSettings,
    dp: DpSgd,
    *,
    state: RecordDict,
    device: torch.device,
) -> tuple[TrainResult, dict[str, float]]:
    """DP-SGD with the ledger kept in the client's ``state``; also returns this
    client's epsilon now and after one more round like this one."""
    require_opacus("dp=local")
    result, ledger = train_head_private(head, x, y, s, dp, ledger=load_ledger(state), device=device)
    save_ledger(state, ledger)
    next_round = round_steps(len(y), s.batch_size, s.epochs, dp.noise_multiplier)
    return result, {
        DP_EPSILON: epsilon(ledger, dp.delta),
        DP_NEXT_EPSILON: epsilon([*ledger, next_round], dp.delta),
    }
