"""SGD (with momentum) and Adam in numpy, with PyTorch's update rules
(``torch.optim.SGD`` / ``torch.optim.Adam``: L2 weight decay added to the
gradient, no dampening, no Nesterov, no AMSGrad), so an edge client's head
follows the same trajectory as a PyTorch client's."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from client.local_training import TrainSettings

Params = dict[str, np.ndarray]


class Optimizer(Protocol):
    def step(self, params: Params, grads: Params) -> None:
        """Update ``params`` in place."""
        ...


class Sgd:
    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: Params = {}

    def step(self, params: Params, grads: Params) -> None:
        for name, p in params.items():
            d = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            if self.momentum:
                buf = self.buffers.get(name)
                d = d.copy() if buf is None else buf * self.momentum + d
                self.buffers[name] = d
            p -= self.lr * d


class Adam:
    def __init__(
        self,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    def step(self, params: Params, grads: Params) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1**self.t)
        bc2_sqrt = math.sqrt(1 - b2**self.t)
        for name, p in params.items():
            g = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            m = self.m.get(name, np.zeros_like(p))
            v = self.v.get(name, np.zeros_like(p))
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * g * g
            self.m[name], self.v[name] = m, v
            p -= step_size * m / (np.sqrt(v) / bc2_sqrt + self.eps)


def make_optimizer(s: TrainSettings) -> Optimizer:
    if s.optimizer == "adam":
        return Adam(s.lr, weight_decay=s.weight_decay)
    return Sgd(s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
