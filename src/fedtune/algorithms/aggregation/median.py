"""Coordinate-wise median (Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards
Optimal Statistical Rates"; Flower's FedMedian, FederatedScope's ``median_aggregator``).

Each coordinate of the aggregate is the median of that coordinate over the clients (the mean of
the two middle values for an even count, as numpy's and Flower's; FederatedScope's
``(median(X) − median(−X))/2`` is the same value). Unweighted. For LoRA the A and B factors are
taken coordinate by coordinate, so the aggregate's A and B may come from different clients.
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedtune.algorithms.aggregation.geometry import stacked
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class MedianParams(Section):
    f: int = Field(0, ge=0)  # attackers assumed per round: the rule needs 2f + 2 < clients per round


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Median over dim 0, the two middle values averaged for an even count."""
    n = x.shape[0]
    ordered = x.sort(dim=0).values
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


@REDUCERS.register("median", MedianParams)
class Median(Reducer):
    """Coordinate-wise median of the client deltas (unweighted)."""

    requirement = "2f + 2 < clients per round"

    def min_clients(self):
        return 2 * self.params.f + 3

    def reduce(self, deltas, weights, round):
        delta = {key: coordinate_median(stacked(deltas, key)) for key in deltas[0]}
        return Reduction(delta, kept=list(range(len(deltas))))
