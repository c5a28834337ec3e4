"""Pulling the final answer out of a generated text, and comparing it with a reference.

The extractors are lm-evaluation-harness's for GSM8K (its ``gsm8k`` task, 0.4.13): ``gsm8k``
is the "strict-match" filter — the number after ``#### `` — and ``last_number`` the
"flexible-extract" one — the last number-like run in the text. Both yield ``[invalid]`` when
nothing matches, as lm-eval's filters do. Comparison normalises as that task's ``exact_match``
does (case folded; commas, ``$``, everything up to ``#### `` and a trailing period removed), so a
native score and lm-eval's agree item by item.
"""

from __future__ import annotations

import re

INVALID = "[invalid]"
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORED = [re.compile(p) for p in (r",", r"\$", r"(?s).*#### ", r"\.$")]  # lm-eval gsm8k regexes_to_ignore


def _last_group(matches: list) -> str:
    if not matches:
        return INVALID
    last = matches[-1]
    return next((g for g in last if g), INVALID) if isinstance(last, tuple) else last


def extract(text: str, how: str, pattern: str | None = None) -> str:
    """``how``: ``gsm8k`` (strict ``#### N``), ``last_number`` (flexible), ``regex`` (the first
    group of ``pattern``'s first match, or the whole match) or ``none`` (the stripped text)."""
    if how == "none":
        return text.strip()
    if how == "gsm8k":
        m = STRICT.search(text)
        return m.group(1).strip() if m else INVALID
    if how == "last_number":
        return _last_group(FLEXIBLE.findall(text)).strip()
    if how == "regex":
        m = re.search(pattern or "", text)
        return (m.group(1) if m.groups() else m.group(0)).strip() if m else INVALID
    raise ValueError(f"unknown answer extraction {how!r}")


def normalise(text: str) -> str:
    for rx in IGNORED:
        text = rx.sub("", text)
    return text.strip().lower()


def matches(prediction: str, reference: str) -> bool:
    """The extracted prediction equals the reference after normalisation (``[invalid]`` never does)."""
    return prediction != INVALID and normalise(prediction) == normalise(reference)
