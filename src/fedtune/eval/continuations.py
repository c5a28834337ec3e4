"""Log-likelihood of a continuation given a context, encoded as lm-evaluation-harness encodes it.

Trailing whitespace of the context moves to the continuation, the concatenation is tokenized
whole and split at the context's token length (lm-eval 0.4.13 ``TemplateLM._encode_pair``), so
the native multiple-choice and perplexity scores equal lm-eval's on the same model. One forward
pass per batch (right-padded; the LM head only at the continuation's positions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fedtune.models.device import model_device
from fedtune.models.logprobs import IGNORE, response_logits
from fedtune.models.logprobs import collate as pad_batch
from fedtune.precision import Precision


@dataclass
class Scored:
    logprob: float  # sum of log p over the continuation's tokens
    tokens: int  # how many
    greedy: bool  # every continuation token is the argmax (lm-eval's is_greedy)


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    start = len(tokenizer(context, add_special_tokens=False)["input_ids"]) if context else 0
    return whole[:start], whole[start:]


def score_continuations(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16,
                        precision: Precision = Precision()) -> list[Scored]:
    """One ``Scored`` per (context, continuation) string pair."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_pair(tokenizer, c, x) for c, x in pairs]
    return score_token_pairs(model, encoded, pad, batch_size, precision)


@torch.no_grad()
def score_token_pairs(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 16,
                      precision: Precision = Precision()) -> list[Scored]:
    """One ``Scored`` per (context ids, continuation ids); a context must not be empty."""
    model.eval()
    encoded = [(ctx + cont, [IGNORE] * len(ctx) + cont) for ctx, cont in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # little padding
    out: list[Scored | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = pad_batch([encoded[i][0] for i in idx], [encoded[i][1] for i in idx], pad_id, model_device(model))
        with precision.autocast():
            logits, targets, rows = response_logits(model, batch)
        logits = logits.float()
        token_logps = -F.cross_entropy(logits, targets, reduction="none")
        hits = logits.argmax(-1) == targets
        for j, i in enumerate(idx):
            mine = rows == j
            out[i] = Scored(float(token_logps[mine].sum()), int(mine.sum()), bool(hits[mine].all()))
    return out
