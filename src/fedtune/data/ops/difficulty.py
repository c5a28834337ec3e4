"""Difficulty scores for records, behind a registry so quality-control methods can plug in theirs.

Built in: ``ifd`` — Instruction-Following Difficulty (Li et al. 2024, "From Quantity to Quality";
Data-Juicer ``instruction_following_difficulty_filter``): the model's mean cross-entropy on the
answer given the instruction, divided by its mean cross-entropy on the answer alone. Near 1: the
instruction does not help the model; well below 1: the answer follows easily from it.

A scorer is ``fn(records, ctx) -> list[float]``; register one with ``@register_scorer("name")``
and select it with ``{op: difficulty, scorer: name}``. The ``difficulty`` op keeps a score range or
the highest-scoring share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field

from fedtune.data.ops.registry import OPS, DataOp, within
from fedtune.data.records import sft_answer
from fedtune.data.sources import DataError
from fedtune.data.tokenize import as_sft, tokenize_sft
from fedtune.models.logprobs import IGNORE, mean_response_ce
from fedtune.schema import Section


@dataclass
class ScoringContext:
    """What a scorer may use: the run's model and tokenizer and the tokenization settings."""

    model: object
    tokenizer: object
    max_length: int
    system_prompt: str | None
    batch_size: int = 16


def scoring_context(loaded, data_cfg) -> Callable[[], ScoringContext] | None:
    """A lazy ScoringContext for the run's model (``loaded``, a LoadedModel) and data settings;
    None without a model."""
    if loaded is None:
        return None
    return lambda: ScoringContext(loaded.model, loaded.tokenizer, data_cfg.max_length, data_cfg.system_prompt)


Scorer = Callable[[list[dict], ScoringContext], list[float]]
SCORERS: dict[str, Scorer] = {}


def register_scorer(name: str) -> Callable[[Scorer], Scorer]:
    def add(fn: Scorer) -> Scorer:
        SCORERS[name] = fn
        return fn
    return add


def _last_span_only(labels: list[int]) -> list[int]:
    """Keep only the last run of label tokens (the final answer of a multi-turn record)."""
    end = max(i for i, l in enumerate(labels) if l != IGNORE) + 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE:
        start -= 1
    return [l if start <= i < end else IGNORE for i, l in enumerate(labels)]


@register_scorer("ifd")
def ifd(records: list[dict], ctx: ScoringContext) -> list[float]:
    sft = [as_sft(r) if "prompt" in r else r for r in records]
    cond = tokenize_sft(sft, ctx.tokenizer, ctx.max_length, ctx.system_prompt)
    scored = [i for i in range(len(sft)) if i not in set(cond.dropped)]  # dropped: no answer token fits
    answers = [ctx.tokenizer(sft_answer(sft[i]), add_special_tokens=False)["input_ids"][: ctx.max_length]
               for i in scored]
    pad = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else 0
    model = ctx.model
    was_training = model.training
    model.eval()
    try:
        conditioned = mean_response_ce(model, cond.input_ids, [_last_span_only(l) for l in cond.labels], pad, ctx.batch_size)
        alone = mean_response_ce(model, answers, answers, pad, ctx.batch_size)
    finally:
        model.train(was_training)
    scores = [float("nan")] * len(sft)  # unscored records are kept; tokenization drops and counts them
    for i, c, a in zip(scored, conditioned, alone):
        scores[i] = c / a if a > 0 else 0.0
    return scores


class DifficultyParams(Section):
    """Score every record with a registered scorer (e.g. IFD) and keep a range or a share."""

    scorer: str = "ifd"
    min: float | None = None
    max: float | None = None
    keep_fraction: float | None = Field(None, gt=0, le=1)  # keep the highest-scoring share
    batch_size: int = Field(16, ge=1)


@OPS.register("difficulty", DifficultyParams)
class Difficulty(DataOp):
    """Score every record with a registered scorer (e.g. IFD) and keep a range or a share."""

    needs_model = True

    def keep(self, records, ctx):
        op = self.params
        if op.scorer not in SCORERS:
            raise DataError(f"data.pipeline difficulty.scorer: unknown scorer {op.scorer!r}; registered: {sorted(SCORERS)}")
        ctx.batch_size = op.batch_size
        scores = SCORERS[op.scorer](records, ctx)
        keep = [math.isnan(s) or within(s, op.min, op.max) for s in scores]
        if op.keep_fraction is not None:
            ranked = sorted((s for s, k in zip(scores, keep) if k and not math.isnan(s)), reverse=True)
            cut = ranked[max(0, math.ceil(op.keep_fraction * len(ranked)) - 1)] if ranked else math.inf
            keep = [k and (math.isnan(s) or s >= cut) for s, k in zip(scores, keep)]
        return keep
