"""The DPO family's shared local objective: reference log-probs once per round, then a pair
loss per micro-batch on the policy's log-probs. DPO, β-DPO and Dr. DPO (one file each) differ
only in ``pair_loss``.

The reference policy is never a second model copy: it is the same model with the adapter
disabled (``reference: base``) or with the frozen start adapter swapped in (``reference: start``,
e.g. the SFT stage's result), evaluated once per round on the pairs the client will train on.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedtune.data.tokenize import PreferenceTokens
from fedtune.models.device import model_device
from fedtune.models.logprobs import pair_batch, reference_logps, response_logps
from fedtune.schema import Section


class PreferenceParams(Section):
    """Parameters every DPO-family objective shares."""

    beta: float = Field(0.1, gt=0)  # DPO's β: strength of the KL anchor to the reference
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # conservative DPO (cDPO) ε
    # The reference policy: the base model (adapter disabled) or the adapter the run/stage started
    # from (e.g. the SFT stage's result).
    reference: Literal["base", "start"] = "base"


def preference_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """Reward accuracy (share of pairs with chosen reward > rejected) and mean reward margin."""
    return {"reward_accuracy": float((chosen_rewards > rejected_rewards).float().mean()),
            "margin": float((chosen_rewards - rejected_rewards).mean())}


class PreferenceObjective:
    """Base of the DPO family. A step's loss is the mean over its pairs."""

    record_kind = "preference"
    rows_per_example = 2  # a pair's chosen and rejected rows (pair_batch), one DP-SGD unit
    per_example = True  # the loss is a sum over pairs: per-pair gradients exist (DP-SGD)

    def __init__(self, params: PreferenceParams, reference):
        self.params, self.reference = params, reference
        self._ref: dict[int, tuple[float, float]] = {}
        self._sums: dict[str, float] = {}
        self._count = 0

    def lengths(self, tokens: PreferenceTokens) -> list[int]:
        return tokens.lengths()

    def step_weight(self, tokens, idx) -> int:
        return len(idx)

    def begin_round(self, trainer, tokens, indices) -> None:
        self._ref = reference_logps(trainer.model, tokens, indices, self.reference, trainer.pad_id)
        self._sums, self._count = {}, 0
        self.generator = torch.Generator().manual_seed(trainer.round_seed)

    def end_round(self, trainer) -> None:
        pass

    def pair_loss(self, pc, pr, rc, rr) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """(mean loss over the pairs, chosen rewards, rejected rewards, extra metrics) from the
        policy's and the reference's chosen/rejected log-probs."""
        raise NotImplementedError

    def loss(self, model, tokens, idx, pad_id):
        """Mean pair loss of a micro-batch times its size (the trainer divides by the step's pairs)."""
        lp = response_logps(model, pair_batch(tokens, idx, pad_id, model_device(model)))
        n = len(idx)
        rc = torch.tensor([self._ref[i][0] for i in idx], device=lp.device)
        rr = torch.tensor([self._ref[i][1] for i in idx], device=lp.device)
        loss, cr, rj, info = self.pair_loss(lp[:n], lp[n:], rc, rr)
        for k, v in {**preference_metrics(cr, rj), **info}.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        return loss * n, info

    def round_metrics(self) -> dict[str, float]:
        return {k: v / max(self._count, 1) for k, v in self._sums.items()}
