"""Supervised fine-tuning loss: next-token cross-entropy on response tokens only.

The LM head runs only at positions whose next token is a label. On short-answer data most
positions are prompt, so this skips most of the vocabulary projection (a large share of a small
model's FLOPs) without changing the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedtune.client.batching import collate
from fedtune.data.tokenize import IGNORE, TokenizedSet


def causal_parts(model):
    """(decoder, lm_head) of a (peft-wrapped) causal LM."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(causal, causal.base_model_prefix), causal.get_output_embeddings()


def response_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a label, those labels, and each one's row (flattened)."""
    decoder, lm_head = causal_parts(model)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    return lm_head(hidden[:, :-1][keep]), targets[keep], keep.nonzero()[:, 0]


def response_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-sequence sum of log p(response tokens), in fp32 (what DPO compares)."""
    logits, targets, rows = response_logits(model, batch)
    token_logps = -F.cross_entropy(logits.float(), targets, reduction="none")
    return torch.zeros(batch["input_ids"].shape[0], dtype=token_logps.dtype).index_add(0, rows, token_logps)


class SFTObjective:
    """Token-level cross-entropy; a step's loss is the mean over all its response tokens."""

    name = "sft"

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
        batch = collate([tokens.input_ids[i] for i in idx], [tokens.labels[i] for i in idx], pad_id)
        logits, targets, _ = response_logits(model, batch)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), {}

    def round_metrics(self) -> dict[str, float]:
        return {}
