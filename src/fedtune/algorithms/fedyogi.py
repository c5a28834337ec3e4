"""FedYogi (Reddi et al., 2021, Algorithm 2): v <- v - (1 - beta2) * d^2 * sign(v - d^2).

The shared update rule, its variants and parameters are in ``fedtune.algorithms.fedopt``.
"""

from __future__ import annotations

import torch

from fedtune.algorithms.fedopt import FedOpt, FedOptParams
from fedtune.algorithms.registry import ALGORITHMS


@ALGORITHMS.register("fedyogi", FedOptParams)
class FedYogi(FedOpt):
    """Adaptive server optimizer with Yogi's sign-controlled second moment."""

    name = "fedyogi"

    def second_moment(self, v, g2):
        return v - (1 - self.params.beta2) * g2 * torch.sign(v - g2)
