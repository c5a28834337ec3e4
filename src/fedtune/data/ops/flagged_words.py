"""Data-Juicer's ``flagged_words_filter`` (re-derived from its docs and code, not copied)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import Field

from fedtune.data.ops.registry import OPS, DataOp
from fedtune.data.ops.text import record_text, words
from fedtune.data.sources import DataError
from fedtune.schema import Section


class FlaggedWordsParams(Section):
    """Drop records whose share of flagged words exceeds max_ratio (Data-Juicer)."""

    words: list[str] | None = None  # None = the built-in English list
    words_file: str | None = None  # one word per line, added to `words`
    max_ratio: float = Field(0.0, ge=0, le=1)


def flagged_ratio(text: str, flagged: set[str]) -> float:
    ws = words(text)
    return sum(w in flagged for w in ws) / len(ws) if ws else 0.0


def builtin_flagged_words() -> set[str]:
    text = resources.files("fedtune.data.ops").joinpath("flagged_words_en.txt").read_text(encoding="utf-8")
    return {w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#")}


@OPS.register("flagged_words", FlaggedWordsParams)
class FlaggedWords(DataOp):
    """Drop records whose share of flagged words exceeds max_ratio."""

    def keep(self, records, ctx):
        flagged = self.words()
        return [flagged_ratio(record_text(r), flagged) <= self.params.max_ratio for r in records]

    def words(self) -> set[str]:
        p = self.params
        out = {w.lower() for w in p.words} if p.words is not None else builtin_flagged_words()
        if p.words_file:
            path = Path(p.words_file)
            if not path.is_file():
                raise DataError(f"data.pipeline flagged_words.words_file: {path} not found")
            out |= {w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()}
        return out
