"""FedAdam (Reddi et al., 2021, Algorithm 2): v <- beta2 * v + (1 - beta2) * d^2.

The shared update rule, its variants and parameters are in ``fedtune.algorithms.fedopt``.
"""

from __future__ import annotations

from fedtune.algorithms.fedopt import FedOpt, FedOptParams
from fedtune.algorithms.registry import ALGORITHMS


@ALGORITHMS.register("fedadam", FedOptParams)
class FedAdam(FedOpt):
    """Adaptive server optimizer with Adam's moving second moment."""

    name = "fedadam"

    def second_moment(self, v, g2):
        return self.params.beta2 * v + (1 - self.params.beta2) * g2
