"""FedProx client hook (Li et al., 2020): adds mu/2 * ||theta - theta_global||^2 to each step's
loss, over the trainable (LoRA) parameters, with theta_global the adapter the round started from."""

from __future__ import annotations

import torch

from fedtune.client.hooks import TrainingHook, register_hook


class FedProxHook(TrainingHook):
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
    mu = instruction.config.get("prox_mu")
    return FedProxHook(float(mu)) if mu else None
