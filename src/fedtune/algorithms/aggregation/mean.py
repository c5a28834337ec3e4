"""The weighted mean of client deltas: sum_i w_i d_i (FedAvg's reduce step, McMahan et al. 2017)."""

from __future__ import annotations

from fedtune.algorithms.aggregation.geometry import weighted_sum
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction


@REDUCERS.register("mean")
class Mean(Reducer):
    """Weighted mean of the client deltas (weights from aggregation.weighting); not robust."""

    def reduce(self, deltas, weights, round):
        return Reduction(weighted_sum(deltas, weights), kept=list(range(len(deltas))))
