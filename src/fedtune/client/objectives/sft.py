"""Supervised fine-tuning loss: next-token cross-entropy on response tokens only.

The LM head runs only at positions whose next token is a label. On short-answer data most
positions are prompt, so this skips most of the vocabulary projection (a large share of a small
model's FLOPs) without changing the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedtune.data.tokenize import IGNORE


def causal_parts(model):
    """(decoder, lm_head) of a (peft-wrapped) causal LM."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(causal, causal.base_model_prefix), causal.get_output_embeddings()


def response_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a label, and those labels (both flattened)."""
    decoder, lm_head = causal_parts(model)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    return lm_head(hidden[:, :-1][keep]), targets[keep]


def sft_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy over response tokens, and the token count (for exact averaging
    across gradient-accumulation micro-batches)."""
    logits, targets = response_logits(model, batch)
    return F.cross_entropy(logits.float(), targets, reduction="sum"), int(targets.numel())
