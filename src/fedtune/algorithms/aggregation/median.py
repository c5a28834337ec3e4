"""Coordinate-wise median (Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards
Optimal Statistical Rates"; Flower's FedMedian, FederatedScope's ``median_aggregator``).

Each coordinate of the aggregate is the median of that coordinate over the clients (the mean of
the two middle values for an even count, as numpy's and Flower's; FederatedScope's
``(median(X) − median(−X))/2`` is the same value). Unweighted. For LoRA the A and B factors are
taken coordinate by coordinate, so the aggregate's A and B may come from different clients.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.algorithms.aggregation.order_statistics import coordinatewise, middle
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class MedianParams(Section):
    f: int = Field(0, ge=0)  # attackers assumed per round: the rule needs 2f + 2 < clients per round


@REDUCERS.register("median", MedianParams)
class Median(Reducer):
    """Coordinate-wise median of the client deltas (unweighted)."""

    requirement = "2f + 2 < clients per round"

    def min_clients(self):
        return 2 * self.params.f + 3

    def reduce(self, deltas, weights, round):
        delta = coordinatewise(deltas, middle)
        return Reduction(delta, kept=list(range(len(deltas))))
