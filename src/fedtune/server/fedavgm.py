"""FedAvgM: FedAvg with server momentum (Hsu, Qi, Brown, 2019, "Measuring the Effects of
Non-Identical Data Distribution for Federated Visual Classification").

``variant: reddi`` (the paper; identical to Flower's FedAvgM): pseudo-gradient g = x - avg(y),
v <- beta * v + g (v = g in the first round), x <- x - server_lr * v.
``variant: openfedllm`` (OpenFedLLM's fed_global.py): d = avg(y) - x, m <- d in round 0 else
beta1 * m + (1 - beta1) * d (an EMA, not heavy-ball momentum), x <- x + m.
"""

from __future__ import annotations

import torch

from fedtune import adapter_state as ops
from fedtune.server.fedavg import weighted_delta
from fedtune.server.strategy import Strategy


class FedAvgM(Strategy):
    name = "fedavgm"

    def __init__(self, weighting="examples", server_lr=1.0, momentum=0.9, beta1=0.9, variant="reddi"):
        self.weighting, self.server_lr, self.momentum, self.beta1, self.variant = (
            weighting, server_lr, momentum, beta1, variant)
        self.velocity: dict[str, torch.Tensor] | None = None

    def aggregate(self, round, global_adapter, updates):
        delta = weighted_delta(global_adapter, updates, self.weighting)  # avg(y) - x
        if self.variant == "openfedllm":
            if self.velocity is None:
                self.velocity = delta
            else:
                self.velocity = ops.add({k: self.beta1 * v for k, v in self.velocity.items()}, delta, 1 - self.beta1)
            return ops.add(global_adapter, self.velocity)
        grad = {k: -v for k, v in delta.items()}
        if self.velocity is None:
            self.velocity = grad
        else:
            self.velocity = ops.add({k: self.momentum * v for k, v in self.velocity.items()}, grad)
        return ops.add(global_adapter, self.velocity, -self.server_lr)

    def state_dict(self):
        return {f"velocity/{k}": v for k, v in (self.velocity or {}).items()}

    def load_state_dict(self, state):
        self.velocity = {k.split("/", 1)[1]: v.clone() for k, v in state.items()} or None
