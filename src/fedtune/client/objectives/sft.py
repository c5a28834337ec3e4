"""Supervised fine-tuning loss: next-token cross-entropy on response tokens only (the LM head
runs only where a label is, see ``fedtune.models.logprobs``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedtune.client.objectives.registry import OBJECTIVES
from fedtune.data.tokenize import TokenizedSet
from fedtune.models.device import model_device
from fedtune.models.logprobs import IGNORE, collate, response_logits


@OBJECTIVES.register("sft")
class SFTObjective:
    """Supervised fine-tuning: token cross-entropy, a step's loss the mean over its response tokens."""

    name = "sft"
    record_kind = "sft"
    rows_per_example = 1  # batch rows per example (DP-SGD's privacy unit)
    per_example = True  # the loss is a sum over examples: per-example gradients exist (DP-SGD)

    def __init__(self, params=None, reference=None):
        self.params = params  # no parameters; SFT has no reference policy

    def lengths(self, tokens: TokenizedSet) -> list[int]:
        return tokens.lengths()

    def step_weight(self, tokens: TokenizedSet, idx: list[int]) -> int:
        return sum(sum(1 for l in tokens.labels[i][1:] if l != IGNORE) for i in idx)

    def begin_round(self, trainer, tokens, indices: list[int]) -> None:
        pass

    def end_round(self, trainer) -> None:
        pass

    def loss(self, model, tokens: TokenizedSet, idx: list[int], pad_id: int) -> tuple[torch.Tensor, dict]:
        """Summed token loss of a micro-batch (the trainer divides by the step's token count)."""
        batch = collate([tokens.input_ids[i] for i in idx], [tokens.labels[i] for i in idx], pad_id,
                        model_device(model))
        logits, targets, _ = response_logits(model, batch)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), {}

    def round_metrics(self) -> dict[str, float]:
        return {}
