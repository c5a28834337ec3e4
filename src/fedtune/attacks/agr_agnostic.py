"""Shejwalkar & Houmansadr, 2021, "Manipulating the Byzantine: Optimizing Model Poisoning Attacks
and Defenses for Federated Learning" (NDSS), AGR-agnostic attacks: every attacker sends
Δ = μ + γ·p, μ the benign mean, p a perturbation direction, and γ is the largest value (binary
search, the paper's Algorithm 1: γ_init = 10, τ = 1e-5) for which Δ still looks benign:

- Min-Max: max_j ||Δ − Δ_j|| ≤ max_{j,k} ||Δ_j − Δ_k||  (no farther from any benign update than
  the two farthest benign updates are from each other);
- Min-Sum: Σ_j ||Δ − Δ_j||² ≤ max_k Σ_j ||Δ_k − Δ_j||².

Directions: ``std`` (−σ, the paper's strongest in most settings), ``unit_vec`` (−μ/||μ||),
``sign`` (−sign(μ)). Distances are global L2 over the whole adapter. Omniscient.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedtune.algorithms.aggregation.geometry import norms, squared_distances
from fedtune.attacks.registry import (
    ATTACKS,
    Attack,
    AttackParams,
    coordinate_stats,
    knowledge,
)


class AgrAgnosticParams(AttackParams):
    perturbation: Literal["std", "unit_vec", "sign"] = "std"  # p
    gamma_init: float = Field(10.0, gt=0)  # the search's first γ (the paper's 10)
    tau: float = Field(1e-5, gt=0)  # the search stops when γ moves by less than τ


def direction(kind: str, mean, std):
    if kind == "std":
        return {k: -s for k, s in std.items()}
    if kind == "sign":
        return {k: -torch.sign(m) for k, m in mean.items()}
    size = norms([mean])[0] or 1.0
    return {k: -m / size for k, m in mean.items()}


def largest_gamma(fits, gamma_init: float, tau: float) -> float:
    """The authors' search for the largest γ with fits(γ) in (0, 2·γ_init): up or down by half the
    last step, until γ settles within τ (0 when no γ fits)."""
    gamma, step, good = gamma_init, gamma_init, 0.0
    while abs(good - gamma) > tau and step > tau:
        if fits(gamma):
            good = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    return good


class AgrAgnostic(Attack):
    omniscient = True

    def fits(self, candidate, benign) -> bool:
        raise NotImplementedError

    def craft(self, own, benign, round, client_ids):
        ref = knowledge(own, benign)
        mean, std = coordinate_stats(ref)
        p = direction(self.params.perturbation, mean, std)
        point = lambda g: {k: mean[k] + g * p[k] for k in mean}  # noqa: E731
        gamma = largest_gamma(lambda g: self.fits(point(g), ref), self.params.gamma_init, self.params.tau)
        self.gamma = gamma  # for tests and reports
        return [point(gamma)] * len(own)


@ATTACKS.register("min_max", AgrAgnosticParams)
class MinMax(AgrAgnostic):
    """μ + γp with γ maximal such that no benign update is farther than benign ones are apart."""

    def fits(self, candidate, benign):
        d = squared_distances([candidate, *benign])
        return bool(d[0, 1:].max() <= d[1:, 1:].max())


@ATTACKS.register("min_sum", AgrAgnosticParams)
class MinSum(AgrAgnostic):
    """μ + γp with γ maximal such that its summed squared distance is within the benign maximum."""

    def fits(self, candidate, benign):
        d = squared_distances([candidate, *benign])
        return bool(d[0, 1:].sum() <= d[1:, 1:].sum(1).max())
