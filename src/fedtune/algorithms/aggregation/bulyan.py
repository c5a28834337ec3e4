"""Bulyan (El Mhamdi et al., 2018, "The Hidden Vulnerability of Distributed Learning in
Byzantium"), as Flower's ``Bulyan`` implements it.

θ = n − 2f deltas are selected by Multi-Krum; per coordinate, the β = θ − 2f values closest to
the coordinate-wise median of the selection are averaged. Needs n ≥ 4f + 3. (FederatedScope's
variant selects n − ⌊2qf⌋ and trims ⌊qf⌋ per side, q the sampling rate; Flower's follows the
paper.) For LoRA, selection is in (A, B) space and the averaging is coordinate-wise, per factor.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedtune.algorithms.aggregation.geometry import stacked
from fedtune.algorithms.aggregation.krum import krum_select
from fedtune.algorithms.aggregation.median import coordinate_median
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class BulyanParams(Section):
    f: int = Field(0, ge=0)  # attackers assumed per round: the rule needs 4f + 3 <= clients per round
    distance: Literal["squared_l2", "per_tensor_l2"] = "squared_l2"  # Krum's distance in the selection


def closest_to_median_mean(x: torch.Tensor, beta: int) -> torch.Tensor:
    """Per coordinate, the mean of the ``beta`` values nearest the coordinate-wise median."""
    gap = (x - coordinate_median(x)).abs()
    idx = gap.argsort(dim=0, stable=True)[:beta]
    return torch.take_along_dim(x, idx, dim=0).mean(dim=0)


@REDUCERS.register("bulyan", BulyanParams)
class Bulyan(Reducer):
    """Multi-Krum selection, then a coordinate-wise mean around the median."""

    requirement = "4f + 3 <= clients per round"

    def min_clients(self):
        return 4 * self.params.f + 3

    def reduce(self, deltas, weights, round):
        f, n = self.params.f, len(deltas)
        theta = n - 2 * f
        kept = krum_select(deltas, f, theta, self.params.distance)
        chosen = [deltas[i] for i in kept]
        delta = {key: closest_to_median_mean(stacked(chosen, key), theta - 2 * f) for key in deltas[0]}
        return Reduction(delta, kept=sorted(kept))
