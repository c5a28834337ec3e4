"""Exact match under greedy decoding, computed in one teacher-forced forward pass.

Greedy decoding emits the reference answer (including its end-of-turn token) exactly when, at
every response position, the argmax of the next-token distribution given the reference prefix
is the reference token. Checking that on the teacher-forced logits gives the same verdict as
generating, for the cost of one forward pass and no KV-cache loop. (It is strict: a model that
produced the same *string* through a different tokenization counts as wrong.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fedtune.data.tokenize import TokenizedSet
from fedtune.eval.registry import METRICS, Metric
from fedtune.models.device import model_device
from fedtune.models.logprobs import IGNORE, causal_parts, collate, decoder_hidden
from fedtune.precision import Precision

# Label positions per LM-head call. The fp32 logits of a whole batch (32 GSM8K answers ≈ 4,000
# positions × a 49k vocabulary) plus cross-entropy's log-softmax took ~1.6 GB at once; in chunks
# of 1,024 they take ~0.4 GB, with the same argmax and the same loss up to summation order.
LM_HEAD_CHUNK = 1024


@dataclass
class EvalResult:
    exact_match: float
    loss: float
    n: int
    correct: list[bool]  # per example, in input order

    def as_dict(self) -> dict:
        return {"exact_match": self.exact_match, "loss": self.loss, "n": self.n}


@torch.no_grad()
def evaluate_sft(model, tokens: TokenizedSet, pad_id: int, batch_size: int = 32,
                 precision: Precision = Precision()) -> EvalResult:
    model.eval()
    _, lm_head = causal_parts(model)
    device = model_device(model)
    order = sorted(range(len(tokens)), key=lambda i: len(tokens.input_ids[i]))  # little padding
    correct = [False] * len(tokens)
    loss_sum, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([tokens.input_ids[i] for i in idx], [tokens.labels[i] for i in idx], pad_id, device)
        with precision.autocast():
            hidden = decoder_hidden(model, batch)
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE
        positions, flat_targets = hidden[:, :-1][keep], targets[keep]
        hits = torch.empty_like(flat_targets)
        for c in range(0, len(flat_targets), LM_HEAD_CHUNK):  # bounded logits memory (see LM_HEAD_CHUNK)
            logits = lm_head(positions[c : c + LM_HEAD_CHUNK]).float()
            chunk_targets = flat_targets[c : c + LM_HEAD_CHUNK]
            loss_sum += float(F.cross_entropy(logits, chunk_targets, reduction="sum"))
            hits[c : c + LM_HEAD_CHUNK] = logits.argmax(-1) == chunk_targets
        count += int(flat_targets.numel())
        row = keep.nonzero()[:, 0]
        wrong_per_row = torch.zeros(len(idx), dtype=torch.long, device=device).index_add_(0, row, 1 - hits)
        for j, i in enumerate(idx):
            correct[i] = bool(wrong_per_row[j] == 0)
    n = len(tokens)
    return EvalResult(sum(correct) / max(n, 1), loss_sum / max(count, 1), n, correct)


@METRICS.register("exact_match")
class ExactMatch(Metric):
    """Greedy exact match and token loss, overall, per category, and helpful (non-forbidden) part.

    With a forbidden topic in the test set, ``helpful_exact_match`` is over the other categories."""

    def on_global(self, evaluator, adapter):
        ws = evaluator.ws
        return self.score(evaluator, ws.global_test_tokens, ws.data.global_test)

    def on_client(self, evaluator, client):
        ws = evaluator.ws
        return self.score(evaluator, ws.test_tokens[client], ws.data.clients[client].test)

    def score(self, evaluator, tokens: TokenizedSet, records: list[dict] | None = None) -> dict:
        """Exact match and loss; with ``records``, also exact match per record category."""
        result = evaluate_sft(evaluator.ws.model, tokens, evaluator.pad_id, evaluator.cfg.eval.batch_size,
                              evaluator.precision)
        out = result.as_dict()
        if records is not None:
            dropped = set(tokens.dropped)
            kept = [r for i, r in enumerate(records) if i not in dropped]
            by_cat: dict[str, list[bool]] = {}
            for rec, ok in zip(kept, result.correct):
                by_cat.setdefault(rec.get("category", ""), []).append(ok)
            out["by_category"] = {k: sum(v) / len(v) for k, v in sorted(by_cat.items())}
            if "forbidden" in by_cat:  # helpfulness beside safety: everything but the forbidden topic
                helpful = [ok for k, v in by_cat.items() if k != "forbidden" for ok in v]
                out["helpful_exact_match"] = sum(helpful) / max(len(helpful), 1)
        return out
