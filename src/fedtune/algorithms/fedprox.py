"""FedProx (Li et al., 2020, "Federated Optimization in Heterogeneous Networks").

Server: FedAvg. Client: local loss + mu/2 * ||theta - theta_global||^2 over the trainable
(adapter) parameters, with theta_global the adapter the round started from. OpenFedLLM's
default mu = 0.01.
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedtune.algorithms.fedavg import FedAvg, FedAvgParams
from fedtune.algorithms.registry import ALGORITHMS
from fedtune.client.hooks import TrainingHook, register_hook

PROX_MU = "prox_mu"  # instruction config key


class FedProxParams(FedAvgParams):
    mu: float = Field(0.01, ge=0)  # proximal coefficient


@ALGORITHMS.register("fedprox", FedProxParams)
class FedProx(FedAvg):
    """FedAvg with a proximal term that keeps local training near the global adapter."""

    name = "fedprox"

    def configure_round(self, round, clients, lr, steps, global_adapter):
        instructions = super().configure_round(round, clients, lr, steps, global_adapter)
        for ins in instructions:
            ins.config[PROX_MU] = self.params.mu
        return instructions


class FedProxHook(TrainingHook):
    """Adds mu/2 * ||theta - theta_start||^2 to each step's loss."""

    def __init__(self, mu: float):
        self.mu = mu
        self.anchor: dict[str, torch.Tensor] = {}

    def on_round_start(self, params, instruction):
        self.anchor = {k: p.detach().clone() for k, p in params.items()}

    def extra_loss(self, params):
        total = sum(((p - self.anchor[k]) ** 2).sum() for k, p in params.items())
        return 0.5 * self.mu * total


@register_hook
def fedprox_hook(instruction, store):
    mu = instruction.config.get(PROX_MU)
    return FedProxHook(float(mu)) if mu else None
