"""FedAvgM: FedAvg with server momentum (Hsu, Qi, Brown, 2019, "Measuring the Effects of
Non-Identical Data Distribution for Federated Visual Classification").

``variant: reddi`` (the paper; identical to Flower's FedAvgM): pseudo-gradient g = -d with
d = reduce_i(y_i - x), v <- momentum * v + g (v = g in the first round), x <- x - server_lr * v.
``variant: openfedllm`` (OpenFedLLM's fed_global.py): m <- d in round 0 else
beta1 * m + (1 - beta1) * d (an EMA, not heavy-ball momentum), x <- x + m.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedtune import adapter_state as ops
from fedtune.algorithms.aggregating import AggregatingStrategy
from fedtune.algorithms.registry import ALGORITHMS
from fedtune.schema import Section


class FedAvgMParams(Section):
    server_lr: float = Field(1.0, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # heavy-ball momentum (variant reddi)
    beta1: float = Field(0.9, ge=0, lt=1)  # EMA factor (variant openfedllm)
    variant: Literal["reddi", "openfedllm"] = "reddi"  # the paper, or OpenFedLLM's code


@ALGORITHMS.register("fedavgm", FedAvgMParams)
class FedAvgM(AggregatingStrategy):
    """FedAvg with momentum on the server's pseudo-gradient."""

    name = "fedavgm"

    def __init__(self, params, aggregation=None, num_clients: int = 1, seed: int = 0, privacy=None):
        super().__init__(params, aggregation, num_clients, seed, privacy)
        self.velocity: dict[str, torch.Tensor] | None = None

    def server_update(self, round, global_adapter, delta, updates):
        p = self.params
        delta = {k: d.to(global_adapter[k].dtype) for k, d in delta.items()}
        if p.variant == "openfedllm":
            if self.velocity is None:
                self.velocity = delta
            else:
                self.velocity = ops.add({k: p.beta1 * v for k, v in self.velocity.items()}, delta, 1 - p.beta1)
            return ops.add(global_adapter, self.velocity)
        grad = {k: -v for k, v in delta.items()}
        if self.velocity is None:
            self.velocity = grad
        else:
            self.velocity = ops.add({k: p.momentum * v for k, v in self.velocity.items()}, grad)
        return ops.add(global_adapter, self.velocity, -p.server_lr)

    def server_state_dict(self):
        return {f"velocity/{k}": v for k, v in (self.velocity or {}).items()}

    def load_server_state_dict(self, state):
        self.velocity = {k.split("/", 1)[1]: v.clone() for k, v in state.items()} or None
