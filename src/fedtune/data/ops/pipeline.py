"""Run a client's processing pipeline (``data.pipeline``) and count what every op keeps and drops."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from fedtune.data.ops import dedup, text
from fedtune.data.ops.difficulty import SCORERS, ScoringContext
from fedtune.data.sources import DataError
from fedtune.data.tokenize import as_sft, tokenize_sft


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _token_lengths(records: list[dict], ctx: ScoringContext) -> list[int]:
    """Tokens of each record with the chat template applied (the longer side of a pair)."""
    sides = [[r] for r in records] if "messages" in records[0] else [[as_sft(r), as_sft(r, "rejected")] for r in records]
    out = []
    for pair in sides:
        ts = tokenize_sft(pair, ctx.tokenizer, 10**9, ctx.system_prompt)
        out.append(max(ts.lengths(), default=0))
    return out


def _flagged(op) -> set[str]:
    words = set(w.lower() for w in op.words) if op.words is not None else text.builtin_flagged_words()
    if op.words_file:
        path = Path(op.words_file)
        if not path.is_file():
            raise DataError(f"data.pipeline flagged_words.words_file: {path} not found")
        words |= {w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()}
    return words


def _difficulty(records: list[dict], op, ctx: ScoringContext) -> list[bool]:
    if op.scorer not in SCORERS:
        raise DataError(f"data.pipeline difficulty.scorer: unknown scorer {op.scorer!r}; registered: {sorted(SCORERS)}")
    ctx.batch_size = op.batch_size
    scores = SCORERS[op.scorer](records, ctx)
    keep = [math.isnan(s) or _within(s, op.min, op.max) for s in scores]
    if op.keep_fraction is not None:
        ranked = sorted((s for s, k in zip(scores, keep) if k and not math.isnan(s)), reverse=True)
        cut = ranked[max(0, math.ceil(op.keep_fraction * len(ranked)) - 1)] if ranked else math.inf
        keep = [k and (math.isnan(s) or s >= cut) for s, k in zip(scores, keep)]
    return keep


def _keep(records: list[dict], op, ctx: ScoringContext | None) -> list[bool]:
    kind = op.op
    if kind == "exact_dedup":
        return dedup.exact_dedup(records, op.lowercase)
    if kind == "near_dedup":
        return dedup.near_dedup(records, op.threshold, op.num_perm, op.window)
    if kind == "length":
        return [_within(len(text.record_text(r)), op.min, op.max) for r in records]
    if kind == "token_length":
        return [_within(n, op.min, op.max) for n in _token_lengths(records, ctx)]
    if kind == "alnum_ratio":
        return [_within(text.alnum_ratio(text.record_text(r)), op.min, op.max) for r in records]
    if kind == "char_repetition":
        return [text.char_repetition_ratio(text.record_text(r), op.rep_len) <= op.max for r in records]
    if kind == "flagged_words":
        flagged = _flagged(op)
        return [text.flagged_ratio(text.record_text(r), flagged) <= op.max_ratio for r in records]
    return _difficulty(records, op, ctx)


NEEDS_MODEL = {"token_length", "difficulty"}


def run_pipeline(records: list[dict], ops: list, client: str,
                 context: Callable[[], ScoringContext] | None = None) -> tuple[list[dict], list[dict]]:
    """Apply ``ops`` in order; returns the kept records and one report row per op.

    ``context`` builds the model/tokenizer context lazily (only ops in NEEDS_MODEL call it)."""
    rows = []
    for op in ops:
        if not records:
            rows.append({"client": client, "step": op.op, "kept": 0, "dropped": 0})
            continue
        if op.op in NEEDS_MODEL and context is None:
            raise DataError(f"data.pipeline {op.op}: needs the model's tokenizer; run it inside a run or "
                            "`fedtune data inspect`, which load the model")
        keep = _keep(records, op, context() if op.op in NEEDS_MODEL else None)
        rows.append({"client": client, "step": op.op, "kept": sum(keep), "dropped": len(keep) - sum(keep)})
        records = [r for r, k in zip(records, keep) if k]
    return records, rows
