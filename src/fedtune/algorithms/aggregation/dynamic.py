"""The black-box server's dynamic defense (Zhao et al., 2024, "Understanding Byzantine Robustness
in Federated Learning with a Black-box Server", FederatedScope).

The server keeps its aggregation rule secret and re-draws it uniformly at random every round
from a pool, so an attacker who tailors its update to one rule achieves only the expected damage
over the draw, not the worst case. The draw is a pure function of (seed, round) — a resumed run
draws the same rules without saving RNG state — and is reported in the server's metrics row only
(clients never see it). UNVERIFIED: the authors' branch could not be found; this follows the
paper's description (uniform draw, per round, from {Krum, Median, TrimmedMean, Bulyan}).
"""

from __future__ import annotations

import random

from pydantic import Field, field_validator

from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer
from fedtune.schema import Section


class DynamicParams(Section):
    # the rules drawn from, by name or {name: …, params}; members that take `f` and do not set it get this one's f
    pool: list[REDUCERS.choice()] = ["krum", "median", "trimmed_mean", "bulyan"]
    f: int = Field(0, ge=0)  # attackers assumed per round, for every member that takes it
    seed: int | None = None  # the draw's seed; None = the run seed

    @field_validator("pool")
    @classmethod
    def _flat(cls, pool):
        if not pool:
            raise ValueError("the pool needs at least one rule")
        if any(m.name == "dynamic" for m in pool):
            raise ValueError("a dynamic pool cannot contain dynamic")
        return pool


@REDUCERS.register("dynamic", DynamicParams)
class Dynamic(Reducer):
    """A rule drawn at random every round from a pool (the black-box server)."""

    def __init__(self, params, seed: int = 0):
        super().__init__(params, seed if params.seed is None else params.seed)
        self.members = []
        for member in params.pool:
            if "f" in type(member).model_fields and "f" not in member.model_fields_set:
                member = member.model_copy(update={"f": params.f})
            self.members.append(REDUCERS[member.name].target(member, self.seed))

    requirement = "the strictest rule of the pool"

    def min_clients(self):
        return max(m.min_clients() for m in self.members)

    def draw(self, round: int) -> int:
        """Index of the round's rule in the pool."""
        return random.Random(f"{self.seed}/{round}/dynamic").randrange(len(self.members))

    def reduce(self, deltas, weights, round):
        i = self.draw(round)
        result = self.members[i].reduce(deltas, weights, round)
        result.rule = self.members[i].params.name
        return result
