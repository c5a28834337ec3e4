"""β-DPO (Wu et al., 2024, "β-DPO: Direct Preference Optimization with Dynamic β";
junkangwu/beta-DPO ``trainers.py``): batch-level dynamic β with β-guided data filtering.

The margin statistics (EMA) are client-side state that survives rounds and checkpoints (the
client state store); the filtering draw uses a generator seeded by (seed, round, client).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from fedtune.client.objectives.dpo import dpo_loss
from fedtune.client.objectives.preference import PreferenceObjective, PreferenceParams
from fedtune.client.objectives.registry import OBJECTIVES

BETA_DPO_STATE = "beta_dpo_state"  # client state store name


class BetaDPOParams(PreferenceParams):
    rho: float = Field(0.2, ge=0, lt=1)  # share of each batch filtered out
    a: float = Field(0.6, ge=0)  # β sensitivity to the margin
    gamma: float = Field(0.9, ge=0, lt=1)  # EMA factor of the margin statistics


@dataclass
class BetaDPOState:
    """β-DPO's running statistics of the reward margin (EMA, both start at 0): client-side state
    that survives rounds and checkpoints."""

    gap_mean: float = 0.0
    gap_std: float = 0.0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"gap_mean": torch.tensor(self.gap_mean, dtype=torch.float64),
                "gap_std": torch.tensor(self.gap_std, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.gap_mean, self.gap_std = float(state["gap_mean"]), float(state["gap_std"])


def beta_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta0: float, state: BetaDPOState,
                  generator: torch.Generator, rho: float = 0.2, a: float = 0.6, gamma: float = 0.9,
                  label_smoothing: float = 0.0):
    """β-DPO (Wu et al., 2024, junkangwu/beta-DPO ``trainers.py``): batch-level dynamic β with
    β-guided data filtering.

    M_i = margin; EMA update *before* the loss: M0 ← γ·M0 + (1−γ)·mean(M), σ ← γ·σ + (1−γ)·std(M)
    (unbiased std); keep int(B·(1−ρ)) pairs drawn without replacement with probability ∝
    exp(−½((M_i − M0)/σ)²); β = max(β0·(1 + a·(mean_kept M − M0)), 1e-3), detached; loss = mean over
    kept pairs of the DPO loss with that β. With ρ = 0 and a = 0 it is DPO.
    Returns (loss, chosen_rewards, rejected_rewards, metrics); rewards use β0 as the authors log them.
    """
    margin = ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    m = margin.detach().double()
    n = m.numel()
    state.gap_mean = gamma * state.gap_mean + (1 - gamma) * float(m.mean())
    state.gap_std = gamma * state.gap_std + (1 - gamma) * (float(m.std()) if n > 1 else 0.0)
    keep_n = max(1, int(n * (1 - rho)))
    if keep_n < n:
        sigma = max(state.gap_std, 1e-6)  # guard: the authors' code divides by σ directly
        log_w = -0.5 * ((m - state.gap_mean) / sigma) ** 2
        # shifted by the max: the same distribution, but it cannot underflow to all zeros when
        # every margin is far from the running mean (multinomial would refuse it)
        weights = torch.exp(log_w - log_w.max())
        # drawn on the CPU, with the round's CPU generator, whatever the model's device
        kept = torch.multinomial(weights.float().cpu(), keep_n, replacement=False, generator=generator)
    else:
        kept = torch.arange(n)
    beta = max(beta0 * (1 + a * (float(m[kept].mean()) - state.gap_mean)), 1e-3)
    losses, _, _ = dpo_loss(policy_chosen[kept], policy_rejected[kept], ref_chosen[kept], ref_rejected[kept],
                            beta, label_smoothing)
    chosen_r = beta0 * (policy_chosen - ref_chosen).detach()
    rejected_r = beta0 * (policy_rejected - ref_rejected).detach()
    return losses.mean(), chosen_r, rejected_r, {"beta_used": beta, "pairs_kept": float(keep_n)}


@OBJECTIVES.register("beta-dpo", BetaDPOParams)
class BetaDPO(PreferenceObjective):
    """DPO with a per-batch β from the reward margin and margin-guided pair filtering."""

    name = "beta-dpo"
    per_example = False  # β and the ρ filter come from the whole batch's margins

    def begin_round(self, trainer, tokens, indices) -> None:
        super().begin_round(trainer, tokens, indices)
        saved = trainer.store.get(trainer.client_id, BETA_DPO_STATE)
        self.state = BetaDPOState()
        if saved is not None:
            self.state.load_state_dict(saved)

    def end_round(self, trainer) -> None:
        trainer.store.put(trainer.client_id, BETA_DPO_STATE, self.state.state_dict())

    def pair_loss(self, pc, pr, rc, rr):
        p = self.params
        return beta_dpo_loss(pc, pr, rc, rr, p.beta, self.state, self.generator, p.rho, p.a, p.gamma, p.label_smoothing)
