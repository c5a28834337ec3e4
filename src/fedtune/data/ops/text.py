"""The text an op looks at, and the text statistics of Data-Juicer's heuristic filters.

Source: modelscope/data-juicer ops ``alphanumeric_filter``, ``character_repetition_filter``,
``flagged_words_filter`` (definitions re-derived from their docs and code, not copied).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from importlib import resources

WORD = re.compile(r"[\w']+")


def record_text(record: dict) -> str:
    """Everything a human wrote in the record: every turn, plus both answers of a pair."""
    if "messages" in record:
        return "\n".join(m["content"] for m in record["messages"])
    return "\n".join([*(m["content"] for m in record["prompt"]), record["chosen"], record["rejected"]])


def alnum_ratio(text: str) -> float:
    """Share of alphanumeric characters among all characters."""
    return sum(c.isalnum() for c in text) / len(text) if text else 0.0


def char_repetition_ratio(text: str, rep_len: int) -> float:
    """Share of character ``rep_len``-grams taken by the sqrt(#distinct) most frequent repeated ones."""
    grams = Counter(text[i:i + rep_len] for i in range(len(text) - rep_len + 1))
    if not grams:
        return 0.0
    freqs = sorted(grams.values(), reverse=True)
    unique = sum(1 for f in freqs if f == 1)
    top = min(int(math.sqrt(len(freqs))), len(freqs) - unique)
    return sum(freqs[:top]) / sum(freqs)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def flagged_ratio(text: str, flagged: set[str]) -> float:
    ws = words(text)
    return sum(w in flagged for w in ws) / len(ws) if ws else 0.0


def builtin_flagged_words() -> set[str]:
    text = resources.files("fedtune.data.ops").joinpath("flagged_words_en.txt").read_text(encoding="utf-8")
    return {w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#")}
