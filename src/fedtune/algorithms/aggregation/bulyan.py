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

from fedtune.algorithms.aggregation.krum import krum_select
from fedtune.algorithms.aggregation.order_statistics import (
    coordinatewise,
    mean_of,
    middle,
)
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class BulyanParams(Section):
    f: int = Field(0, ge=0)  # attackers assumed per round: the rule needs 4f + 3 <= clients per round
    distance: Literal["squared_l2", "per_tensor_l2"] = "squared_l2"  # Krum's distance in the selection


def closest_to_median_mean(rows: list[torch.Tensor], beta: int) -> torch.Tensor:
    """Per coordinate, the mean of the ``beta`` values nearest the median, from sorted rows.

    The β values nearest a point form a contiguous window of the sorted values (any value between
    two chosen ones is at least as near), so the rule picks, per coordinate, the window start l
    whose farthest member, max(med − s_l, s_{l+β−1} − med), is nearest; the first such l on a tie."""
    med = middle(rows)
    best_reach = best_mean = None
    for start in range(len(rows) - beta + 1):
        reach = torch.maximum(med - rows[start], rows[start + beta - 1] - med)
        window = mean_of(rows[start : start + beta])
        if best_reach is None:
            best_reach, best_mean = reach, window
            continue
        nearer = reach < best_reach
        best_reach = torch.where(nearer, reach, best_reach)
        best_mean = torch.where(nearer, window, best_mean)
    return best_mean


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
        delta = coordinatewise(chosen, lambda rows: closest_to_median_mean(rows, theta - 2 * f))
        return Reduction(delta, kept=sorted(kept))
