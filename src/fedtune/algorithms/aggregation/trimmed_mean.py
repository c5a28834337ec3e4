"""Coordinate-wise trimmed mean (Yin et al., 2018; Flower's FedTrimmedAvg ``trim_mean``,
FederatedScope's ``trimmedmean_aggregator``).

Per coordinate, drop the k = int(β·n) largest and k smallest values and average the remaining
n − 2k (unweighted). For LoRA, A and B are trimmed coordinate by coordinate, independently.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.algorithms.aggregation.order_statistics import coordinatewise, mean_of
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class TrimmedMeanParams(Section):
    beta: float = Field(0.2, ge=0, lt=0.5)  # share trimmed at each end (Flower's and FederatedScope's tests: 0.2)
    f: int = Field(0, ge=0)  # attackers assumed per round: the rule needs 2f + 2 < clients per round


@REDUCERS.register("trimmed_mean", TrimmedMeanParams)
class TrimmedMean(Reducer):
    """Coordinate-wise mean after trimming the β share of largest and smallest values."""

    requirement = "2f + 2 < clients per round"

    def min_clients(self):
        return 2 * self.params.f + 3

    def reduce(self, deltas, weights, round):
        k = int(self.params.beta * len(deltas))
        delta = coordinatewise(deltas, lambda rows: mean_of(rows[k : len(rows) - k]))
        return Reduction(delta, kept=list(range(len(deltas))), notes={"trimmed_per_side": k})
