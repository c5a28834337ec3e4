"""Federated learning algorithms, one file each: its server Strategy, client hook(s) and
parameter model, found by ``ALGORITHMS`` (``fedtune ls algorithms``)."""

from fedtune.algorithms import (  # noqa: F401  (each registers itself)
    centralized,
    fedadagrad,
    fedadam,
    fedavg,
    fedavgm,
    fedprox,
    fedyogi,
    local,
    scaffold,
)
from fedtune.algorithms.registry import ALGORITHMS, build_strategy  # noqa: F401
