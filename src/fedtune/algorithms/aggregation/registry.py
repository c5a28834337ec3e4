"""The reducer registry, the reducer interface and the ``aggregation`` config section.

A reducer turns the sampled clients' deltas (y_i − x, float64) and their weights into one delta
that the strategy's server update rule applies: θ ← θ_global + AGG(Δ). It reduces each adapter
tensor as it comes — for LoRA, the A and B factors separately, never their product B·A: a
coordinate-wise rule (median, trimmed mean) therefore picks A from one set of clients and B from
another, and a distance-based rule (Krum) measures distance in (A, B) space, not in the space of
weight updates ΔW = B·A. Every reducer documents what it does with that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fedtune.algorithms.aggregation.delta import Delta
from fedtune.schema import Registry, Section

REDUCERS = Registry("reducer")


@dataclass
class Reduction:
    """A reducer's result: the aggregated delta, which updates it kept (indices into the round's
    updates), the rule that ran (under ``dynamic``, the one drawn) and notes for the metrics row."""

    delta: Delta
    kept: list[int]
    rule: str | None = None
    notes: dict = field(default_factory=dict)


class Reducer:
    """Base of every reducer. ``seed`` is the run seed (for randomized rules, drawn statelessly
    per round so a resumed run draws the same)."""

    requirement = "any number of clients"  # how min_clients follows from the parameters, for errors

    def __init__(self, params: Section, seed: int = 0):
        self.params, self.seed = params, seed

    def min_clients(self) -> int:
        """The fewest updates per round the rule is defined (and robust) for."""
        return 1

    def reduce(self, deltas: list[Delta], weights: list[float], round: int) -> Reduction:
        raise NotImplementedError


class AggregationConfig(Section):
    """How client updates combine, under every strategy: weights, then the reducer."""

    weighting: Literal["examples", "uniform"] = "examples"  # client weights: local example counts, or 1/K
    reducer: REDUCERS.choice(default="mean") = "mean"
