"""Dr. DPO (Wu et al., 2024, "Towards Robust Alignment of Language Models: Distributionally
Robustifying Direct Preference Optimization"; junkangwu/Dr_DPO)."""

from __future__ import annotations

import math

import torch
from pydantic import Field

from fedtune.client.objectives.dpo import dpo_loss
from fedtune.client.objectives.preference import PreferenceObjective, PreferenceParams
from fedtune.client.objectives.registry import OBJECTIVES


class DrDPOParams(PreferenceParams):
    beta_prime: float = Field(1.0, gt=0)  # β′: the soft-min temperature over the batch


def dr_dpo_loss(per_pair_losses: torch.Tensor, beta_prime: float = 1.0) -> torch.Tensor:
    """Dr. DPO (Wu et al., 2024, junkangwu/Dr_DPO): L = −β′·log mean_i exp(−ℓ_i/β′), a soft-min
    over the batch that down-weights high-loss (likely flipped) pairs; β′ → ∞ recovers mean DPO."""
    n = per_pair_losses.numel()
    return -beta_prime * (torch.logsumexp(-per_pair_losses / beta_prime, 0) - math.log(n))


@OBJECTIVES.register("dr-dpo", DrDPOParams)
class DrDPO(PreferenceObjective):
    """DPO with a soft-min over the batch that down-weights likely-flipped pairs."""

    name = "dr-dpo"
    per_example = False  # a log-mean-exp over the batch, not a sum over pairs

    def pair_loss(self, pc, pr, rc, rr):
        losses, cr, rj = dpo_loss(pc, pr, rc, rr, self.params.beta, self.params.label_smoothing)
        return dr_dpo_loss(losses, self.params.beta_prime), cr, rj, {}
