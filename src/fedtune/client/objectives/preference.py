"""The DPO family as a local objective: reference log-probs once per round, then per micro-batch
DPO / β-DPO / Dr. DPO on the policy's log-probs (fedtune/client/objectives/preference_losses.py).

The reference policy is never a second model copy: it is the same model with the LoRA adapter
disabled (``reference: base``) or with the frozen start adapter swapped in (``reference: start``,
e.g. the SFT stage's result), evaluated once per round on the pairs the client will train on.
"""

from __future__ import annotations

import contextlib

import torch

from fedtune.client.batching import collate
from fedtune.client.objectives.preference_losses import (
    BetaDPOState, beta_dpo_loss, dpo_loss, dr_dpo_loss, preference_metrics)
from fedtune.client.objectives.sft import response_logps
from fedtune.config import TrainConfig
from fedtune.data.tokenize import PreferenceTokens
from fedtune.models.lora import get_adapter, set_adapter

BETA_DPO_STATE = "beta_dpo_state"


def pair_batch(tokens: PreferenceTokens, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows then rejected rows, one forward pass for both."""
    ids = [tokens.chosen.input_ids[i] for i in idx] + [tokens.rejected.input_ids[i] for i in idx]
    labels = [tokens.chosen.labels[i] for i in idx] + [tokens.rejected.labels[i] for i in idx]
    return collate(ids, labels, pad_id)


@torch.no_grad()
def reference_logps(model, tokens: PreferenceTokens, indices: list[int], reference, pad_id: int,
                    batch_size: int = 16) -> dict[int, tuple[float, float]]:
    """index -> (chosen, rejected) log-probs under the reference policy."""
    current = get_adapter(model) if reference is not None else None
    was_training = model.training
    model.eval()
    out = {}
    unique = sorted(set(indices))
    try:
        if reference is not None:
            set_adapter(model, reference)
        with model.disable_adapter() if reference is None else contextlib.nullcontext():
            for s in range(0, len(unique), batch_size):
                idx = unique[s : s + batch_size]
                lp = response_logps(model, pair_batch(tokens, idx, pad_id))
                for j, i in enumerate(idx):
                    out[i] = (float(lp[j]), float(lp[len(idx) + j]))
    finally:
        if current is not None:
            set_adapter(model, current)
        model.train(was_training)
    return out


class PreferenceObjective:
    """dpo | beta-dpo | dr-dpo. A step's loss is the mean over its pairs."""

    def __init__(self, cfg: TrainConfig, reference):
        self.cfg, self.name, self.reference = cfg, cfg.objective, reference
        self.state = BetaDPOState()
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
        if self.name == "beta-dpo":
            saved = trainer.store.get(trainer.client_id, BETA_DPO_STATE)
            self.state = BetaDPOState()
            if saved is not None:
                self.state.load_state_dict(saved)

    def end_round(self, trainer) -> None:
        if self.name == "beta-dpo":
            trainer.store.put(trainer.client_id, BETA_DPO_STATE, self.state.state_dict())

    def loss(self, model, tokens, idx, pad_id):
        """Mean pair loss of a micro-batch times its size (the trainer divides by the step's pairs)."""
        lp = response_logps(model, pair_batch(tokens, idx, pad_id))
        n = len(idx)
        pc, pr = lp[:n], lp[n:]
        rc = torch.tensor([self._ref[i][0] for i in idx])
        rr = torch.tensor([self._ref[i][1] for i in idx])
        cfg, info = self.cfg, {}
        if self.name == "beta-dpo":
            loss, cr, rj, info = beta_dpo_loss(pc, pr, rc, rr, cfg.dpo_beta, self.state, self.generator,
                                               cfg.beta_dpo_rho, cfg.beta_dpo_a, cfg.beta_dpo_gamma, cfg.label_smoothing)
        else:
            losses, cr, rj = dpo_loss(pc, pr, rc, rr, cfg.dpo_beta, cfg.label_smoothing)
            loss = dr_dpo_loss(losses, cfg.dr_dpo_beta_prime) if self.name == "dr-dpo" else losses.mean()
        for k, v in {**preference_metrics(cr, rj), **info}.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        return loss * n, info

    def round_metrics(self) -> dict[str, float]:
        return {k: v / max(self._count, 1) for k, v in self._sums.items()}
