"""Sign-flipping attack (Damaskinos et al., 2018; Li et al., 2019, RSA): send −s·Δ, the honest
update reversed and scaled by s. Not omniscient."""

from __future__ import annotations

from pydantic import Field

from fedtune.attacks.registry import ATTACKS, Attack, AttackParams


class SignFlipParams(AttackParams):
    scale: float = Field(1.0, gt=0)  # s: how far the reversed update reaches


@ATTACKS.register("sign_flip", SignFlipParams)
class SignFlip(Attack):
    """Send the honest update reversed: −s·Δ."""

    def craft(self, own, benign, round, client_ids):
        return [{k: -self.params.scale * t for k, t in d.items()} for d in own]
