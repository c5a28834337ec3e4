"""ROUGE-L F-measure (Lin, 2004): the longest common subsequence of reference and prediction
tokens, as Google's ``rouge-score`` computes it without stemming (lower-cased, non-alphanumerics
as separators; the tests hold it to that package item by item)."""

from __future__ import annotations

import re

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one row of the DP table at a time)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: str, prediction: str) -> float:
    ref, pred = tokens(reference), tokens(prediction)
    if not ref or not pred:
        return 0.0
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)
