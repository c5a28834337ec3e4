"""Krum and Multi-Krum (Blanchard et al., 2017, "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent"; Flower's Krum/MultiKrum, FederatedScope's ``krum_aggregator``).

score_i = sum of the distances from d_i to its n − f − 2 nearest other deltas; keep the m
lowest-scoring (Krum: m = 1) and return their weighted mean. ``distance: squared_l2`` is the
paper's and Flower's (squared L2 over the whole adapter); ``per_tensor_l2`` is FederatedScope's
(the sum over tensors of per-tensor L2 norms), which can rank differently. For LoRA, distances
are measured between (A, B) factor sets, not between the weight updates B·A they stand for.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedtune.algorithms.aggregation.geometry import (
    per_tensor_distances,
    squared_distances,
    subset_mean,
)
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class KrumParams(Section):
    f: int = Field(0, ge=0)  # attackers assumed per round: the rule needs 2f + 2 < clients per round
    distance: Literal["squared_l2", "per_tensor_l2"] = "squared_l2"  # the paper/Flower, or FederatedScope


class MultiKrumParams(KrumParams):
    m: int | None = Field(None, ge=1)  # updates kept; None = n − f (Blanchard et al.'s choice)


def krum_scores(deltas, f: int, distance: str) -> list[float]:
    """Each delta's Krum score: its summed distance to the n − f − 2 nearest others."""
    d = squared_distances(deltas) if distance == "squared_l2" else per_tensor_distances(deltas)
    n = len(deltas)
    closest = max(1, n - f - 2)
    scores = []
    for i in range(n):
        others = torch.cat([d[i, :i], d[i, i + 1 :]])
        scores.append(float(others.sort().values[:closest].sum()))
    return scores


def krum_select(deltas, f: int, m: int, distance: str) -> list[int]:
    """Indices of the m lowest-scoring deltas, best first (ties: the lower index)."""
    scores = krum_scores(deltas, f, distance)
    return sorted(range(len(deltas)), key=lambda i: (scores[i], i))[:m]


@REDUCERS.register("krum", KrumParams)
class Krum(Reducer):
    """The one delta closest to its n − f − 2 nearest neighbours."""

    requirement = "2f + 2 < clients per round"

    def min_clients(self):
        return 2 * self.params.f + 3

    def count(self, n: int) -> int:
        return 1

    def reduce(self, deltas, weights, round):
        kept = krum_select(deltas, self.params.f, self.count(len(deltas)), self.params.distance)
        return Reduction(subset_mean(deltas, weights, kept), kept=kept)


@REDUCERS.register("multi_krum", MultiKrumParams)
class MultiKrum(Krum):
    """The weighted mean of the m deltas with the best Krum scores."""

    def count(self, n: int) -> int:
        return min(n, self.params.m or n - self.params.f)
