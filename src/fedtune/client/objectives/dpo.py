"""DPO (Rafailov et al., 2023, "Direct Preference Optimization"), with conservative label
smoothing (cDPO, Mitchell 2023). Matches TRL's sigmoid DPO loss (tested against it)."""

from __future__ import annotations

import torch.nn.functional as F

from fedtune.client.objectives.preference import PreferenceObjective, PreferenceParams
from fedtune.client.objectives.registry import OBJECTIVES


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, label_smoothing: float = 0.0):
    """Sigmoid DPO (Rafailov et al., 2023), with conservative label smoothing ε (cDPO, Mitchell 2023):
    ℓ = −(1−ε)·log σ(β·M) − ε·log σ(−β·M), M = (π_c − ref_c) − (π_r − ref_r).

    Returns per-pair losses and the chosen/rejected rewards (detached)."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * margin) - label_smoothing * F.logsigmoid(-beta * margin)
    return losses, beta * (policy_chosen - ref_chosen).detach(), beta * (policy_rejected - ref_rejected).detach()


@OBJECTIVES.register("dpo", PreferenceParams)
class DPO(PreferenceObjective):
    """Direct preference optimization on (chosen, rejected) pairs against a reference policy."""

    name = "dpo"

    def pair_loss(self, pc, pr, rc, rr):
        losses, cr, rj = dpo_loss(pc, pr, rc, rr, self.params.beta, self.params.label_smoothing)
        return losses.mean(), cr, rj, {}
