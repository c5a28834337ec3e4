"""Preference-alignment losses: DPO, β-DPO and Dr. DPO, on per-sequence log-probabilities.

Inputs are summed log-probs of each response under the policy and the reference
(``objectives.sft.response_logps``); rewards are β·(log π − log π_ref), detached, as in DPO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F



def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, label_smoothing: float = 0.0):
    """Sigmoid DPO (Rafailov et al., 2023), with conservative label smoothing ε (cDPO, Mitchell 2023):
    ℓ = −(1−ε)·log σ(β·M) − ε·log σ(−β·M), M = (π_c − ref_c) − (π_r − ref_r).

    Returns per-pair losses and the chosen/rejected rewards (detached)."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * margin) - label_smoothing * F.logsigmoid(-beta * margin)
    return losses, beta * (policy_chosen - ref_chosen).detach(), beta * (policy_rejected - ref_rejected).detach()


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
        kept = torch.multinomial(weights.float(), keep_n, replacement=False, generator=generator)
    else:
        kept = torch.arange(n)
    beta = max(beta0 * (1 + a * (float(m[kept].mean()) - state.gap_mean)), 1e-3)
    losses, _, _ = dpo_loss(policy_chosen[kept], policy_rejected[kept], ref_chosen[kept], ref_rejected[kept],
                            beta, label_smoothing)
    chosen_r = beta0 * (policy_chosen - ref_chosen).detach()
    rejected_r = beta0 * (policy_rejected - ref_rejected).detach()
    return losses.mean(), chosen_r, rejected_r, {"beta_used": beta, "pairs_kept": float(keep_n)}


def dr_dpo_loss(per_pair_losses: torch.Tensor, beta_prime: float = 1.0) -> torch.Tensor:
    """Dr. DPO (Wu et al., 2024, junkangwu/Dr_DPO): L = −β′·log mean_i exp(−ℓ_i/β′), a soft-min
    over the batch that down-weights high-loss (likely flipped) pairs; β′ → ∞ recovers mean DPO."""
    n = per_pair_losses.numel()
    return -beta_prime * (torch.logsumexp(-per_pair_losses / beta_prime, 0) - math.log(n))


def preference_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """Reward accuracy (share of pairs with chosen reward > rejected) and mean reward margin."""
    return {"reward_accuracy": float((chosen_rewards > rejected_rewards).float().mean()),
            "margin": float((chosen_rewards - rejected_rewards).mean())}
