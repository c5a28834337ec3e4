"""Data-Juicer's ``character_repetition_filter`` (re-derived from its docs and code, not copied)."""

from __future__ import annotations

import math
from collections import Counter

from pydantic import Field

from fedtune.data.ops.registry import OPS, DataOp
from fedtune.data.ops.text import record_text
from fedtune.schema import Section


class CharRepetitionParams(Section):
    """Drop records whose character n-gram repetition ratio exceeds max (Data-Juicer)."""

    rep_len: int = Field(10, ge=1)
    max: float = Field(0.5, ge=0, le=1)


def char_repetition_ratio(text: str, rep_len: int) -> float:
    """Share of character ``rep_len``-grams taken by the sqrt(#distinct) most frequent repeated ones."""
    grams = Counter(text[i:i + rep_len] for i in range(len(text) - rep_len + 1))
    if not grams:
        return 0.0
    freqs = sorted(grams.values(), reverse=True)
    unique = sum(1 for f in freqs if f == 1)
    top = min(int(math.sqrt(len(freqs))), len(freqs) - unique)
    return sum(freqs[:top]) / sum(freqs)


@OPS.register("char_repetition", CharRepetitionParams)
class CharRepetition(DataOp):
    """Drop records whose character n-gram repetition ratio exceeds max."""

    def keep(self, records, ctx):
        return [char_repetition_ratio(record_text(r), self.params.rep_len) <= self.params.max for r in records]
