"""FedAdagrad (Reddi et al., 2021, Algorithm 2): v <- v + d^2, no server momentum (m = d),
as Flower's FedAdagrad.

The shared update rule, its variants and parameters are in ``fedtune.algorithms.fedopt``.
"""

from __future__ import annotations

from fedtune.algorithms.fedopt import FedOpt, FedOptParams
from fedtune.algorithms.registry import ALGORITHMS


@ALGORITHMS.register("fedadagrad", FedOptParams)
class FedAdagrad(FedOpt):
    """Adaptive server optimizer with Adagrad's accumulated second moment."""

    name = "fedadagrad"

    def first_moment(self, key, d):
        return d  # no momentum in either variant

    def second_moment(self, v, g2):
        return v + g2
