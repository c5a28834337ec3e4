"""Calibration figures: how well a model's confidence tracks whether its answers are right.

Pure math on lists (no model), used by the ``calibration`` task (``eval/calibration.py``). The
figures are CONQORD's evaluation (Tao et al., 2024, *When to Trust LLMs: Aligning Confidence
with Response Quality*, arXiv 2404.17287; code ``TaoShuchang/CONQORD`` @ 7391fbb,
``step4_evaluation/metric.py`` and ``utils_eval.py``), restated in our own code:

* ``ece`` — expected calibration error over equal-width bins ``(lo, hi]`` on [0, 1]: the
  bin-size-weighted mean of |accuracy − mean confidence| per non-empty bin. One deliberate
  difference: CONQORD's ``calculate_ece`` puts a confidence of exactly 0 in no bin (it still
  counts in the denominator, so it adds nothing); here it falls in the first bin, ``[0, 1/bins]``,
  so a confident-zero wrong answer scores 0 and a confident-zero right answer scores 1.
* ``pearson`` / ``spearman`` — scipy's coefficient and two-sided p-value (as CONQORD reports
  them), or None where a side is constant (the coefficient is undefined).
* ``alignment_scores`` — CONQORD's ``compute_alignment_score`` (the sign form): per item i,
  A_i = Σ_j sign(q_i − q_j)·(c_i − c_j) over all items j (ties in quality contribute 0), not
  normalised. ``order_preservation`` is our scalar summary of it (see there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _arrays(confidences: Sequence[float], other: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    c, o = np.asarray(confidences, dtype=float), np.asarray(other, dtype=float)
    if c.shape != o.shape or c.ndim != 1:
        raise ValueError(f"confidences and {name} must be two lists of the same length ({c.shape} vs {o.shape})")
    return c, o


def ece(confidences: Sequence[float], correct: Sequence[float], bins: int = 10) -> float | None:
    """Expected calibration error with ``bins`` equal-width bins ``(k/bins, (k+1)/bins]`` (a
    confidence of 0 goes in the first); None for no items. Confidences must lie in [0, 1]."""
    if bins < 1:
        raise ValueError(f"ece: bins must be at least 1, not {bins}")
    c, y = _arrays(confidences, correct, "correct")
    if not len(c):
        return None
    if c.min() < 0 or c.max() > 1:
        raise ValueError("ece: confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)  # the same edges (and float rounding) as CONQORD's
    # bin k holds edges[k] < c <= edges[k+1]: searchsorted 'left' finds the first edge >= c
    index = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, bins - 1)
    total = 0.0
    for k in range(bins):
        members = index == k
        if members.any():
            total += members.mean() * abs(y[members].mean() - c[members].mean())
    return float(total)


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _correlation(kind: str, x: Sequence[float], y: Sequence[float]) -> tuple[float, float | None] | None:
    from scipy import stats

    a, b = _arrays(x, y, "the other side")
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    result = stats.pearsonr(a, b) if kind == "pearson" else stats.spearmanr(a, b)
    r, p = _finite(result[0]), _finite(result[1])
    return None if r is None else (r, p)


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, float | None] | None:
    """(Pearson r, two-sided p) by ``scipy.stats.pearsonr``; None with fewer than 2 items or a
    constant side."""
    return _correlation("pearson", x, y)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float | None] | None:
    """(Spearman ρ, two-sided p) by ``scipy.stats.spearmanr``; None with fewer than 2 items or a
    constant side (p is None where scipy gives none, e.g. two items)."""
    return _correlation("spearman", x, y)


def alignment_scores(confidences: Sequence[float], qualities: Sequence[float]) -> np.ndarray:
    """CONQORD's per-item order-preservation score (``utils_eval.py::compute_alignment_score``,
    sign form): A_i = Σ_j sign(q_i − q_j)·(c_i − c_j) — item i gains the amount its confidence
    exceeds that of every worse item and loses the amount it exceeds that of every better one."""
    c, q = _arrays(confidences, qualities, "qualities")
    return (np.sign(q[:, None] - q[None, :]) * (c[:, None] - c[None, :])).sum(axis=1)


def order_preservation(confidences: Sequence[float], qualities: Sequence[float]) -> float | None:
    """The mean of CONQORD's sign-form term over the ordered pairs whose qualities differ:
    Σ_i A_i / #{(i, j): q_i ≠ q_j} — the average confidence gap in the direction of quality, in
    [−1, 1] for confidences in [0, 1] (+1: every better answer is 1.0 more confident than every
    worse one; 0: no order; negative: confidence runs against quality). With 0/1 correctness as
    quality it equals mean confidence of right answers − mean confidence of wrong ones. None when
    every quality is equal (no pair to order).

    The normalisation is ours: UNVERIFIED whether the paper aggregates A_i this way — the
    released code defines ``compute_alignment_score`` (unnormalised, per item) but no script in
    it calls it, and CONQORD's training reward uses the product form (q_i − q_j)·(c_i − c_j)."""
    c, q = _arrays(confidences, qualities, "qualities")
    pairs = int((q[:, None] != q[None, :]).sum())
    if pairs == 0:
        return None
    return float(alignment_scores(c, q).sum() / pairs)
