"""Scaling ("boosting") attack (Bhagoji et al., 2019, "Analyzing Federated Learning through an
Adversarial Lens"): send s·Δ so the attacker's update survives averaging with the others (the
explicit boosting factor is the number of clients). Not omniscient."""

from __future__ import annotations

from pydantic import Field

from fedtune.attacks.registry import ATTACKS, Attack, AttackParams


class ScalingParams(AttackParams):
    factor: float = Field(10.0, gt=0)  # s: the boost (Bhagoji et al. use the number of clients)


@ATTACKS.register("scaling", ScalingParams)
class Scaling(Attack):
    """Send the honest update multiplied by a large factor: s·Δ."""

    def craft(self, own, benign, round, client_ids):
        return [{k: self.params.factor * t for k, t in d.items()} for d in own]
