"""Inner-product manipulation (Xie, Koyejo, Gupta, 2020, "Fall of Empires"): every attacker sends
−ε·μ, μ the mean of the benign deltas, so the aggregate's inner product with the true update
turns negative (small ε slips past distance-based rules, large ε overwhelms the mean).
Omniscient."""

from __future__ import annotations

from pydantic import Field

from fedtune.attacks.registry import (
    ATTACKS,
    Attack,
    AttackParams,
    coordinate_stats,
    knowledge,
)


class IpmParams(AttackParams):
    epsilon: float = Field(0.5, gt=0)  # ε: 0.1–0.5 against robust rules, ≥ n against the mean


@ATTACKS.register("ipm", IpmParams)
class Ipm(Attack):
    """Send the benign mean reversed and scaled by ε."""

    omniscient = True

    def craft(self, own, benign, round, client_ids):
        mean, _ = coordinate_stats(knowledge(own, benign))
        crafted = {k: -self.params.epsilon * m for k, m in mean.items()}
        return [crafted] * len(own)
