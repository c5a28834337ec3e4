"""The reduce step every strategy calls: client deltas -> (transforms) -> a reducer -> one delta.

Flower's ``dp_fixed_clipping.py`` is the model: per-update transforms (clipping, compression,
DP noise) and robust reducers wrap any strategy as new files here, with no edit to FedAvg.
"""

from fedtune.algorithms.aggregation import (  # noqa: F401  (each registers itself)
    bulyan,
    dynamic,
    geometric_median,
    krum,
    mean,
    median,
    norm_bound,
    trimmed_mean,
)
from fedtune.algorithms.aggregation.aggregator import Aggregator  # noqa: F401
from fedtune.algorithms.aggregation.registry import REDUCERS, AggregationConfig  # noqa: F401
