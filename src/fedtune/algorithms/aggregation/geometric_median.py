"""Geometric median by the smoothed Weiszfeld algorithm (Pillutla, Kakade, Harchaoui, 2022,
"Robust Aggregation for Federated Learning", RFA).

minimize_v Σ_i w_i ||v − d_i|| over the whole adapter (global L2, A and B together for LoRA):
v ← Σ_i β_i d_i / Σ_i β_i with β_i = w_i / max(ν, ||v − d_i||), from the weighted mean, until the
objective improves by less than ``tol`` (relative) or ``iterations`` steps. RFA reports that 3–4
steps suffice; the default runs to convergence.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.algorithms.aggregation.geometry import norms, weighted_sum
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class GeometricMedianParams(Section):
    iterations: int = Field(100, ge=1)  # Weiszfeld steps at most
    nu: float = Field(1e-6, gt=0)  # smoothing: distances below ν count as ν (no division by zero)
    tol: float = Field(1e-8, ge=0)  # stop when the objective improves by less than this share


def _distances(v, deltas) -> list[float]:
    return norms([{k: d[k] - v[k] for k in v} for d in deltas])


def geometric_median(deltas, weights, iterations: int, nu: float, tol: float) -> tuple[dict, int]:
    """(the weighted geometric median, steps taken)."""
    v = weighted_sum(deltas, weights)
    dist = _distances(v, deltas)
    objective = sum(w * d for w, d in zip(weights, dist))
    for step in range(1, iterations + 1):
        beta = [w / max(nu, d) for w, d in zip(weights, dist)]
        total = sum(beta)
        v = weighted_sum(deltas, [b / total for b in beta])
        dist = _distances(v, deltas)
        new = sum(w * d for w, d in zip(weights, dist))
        if objective - new <= tol * max(objective, 1e-300):
            return v, step
        objective = new
    return v, iterations


@REDUCERS.register("geometric_median", GeometricMedianParams)
class GeometricMedian(Reducer):
    """The weighted geometric median of the deltas (smoothed Weiszfeld, RFA)."""

    def reduce(self, deltas, weights, round):
        p = self.params
        v, steps = geometric_median(deltas, weights, p.iterations, p.nu, p.tol)
        return Reduction(v, kept=list(range(len(deltas))), notes={"weiszfeld_steps": steps})
