"""ALIE, "A Little Is Enough" (Baruch, Baruch, Goldberg, 2019): every attacker sends μ − z·σ,
coordinate-wise, μ and σ the mean and standard deviation of the benign deltas, with
z = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f (n clients in the round, f attackers among them): the
largest shift that still hides inside the benign spread. Omniscient (colluding attackers).
"""

from __future__ import annotations

from statistics import NormalDist

from fedtune.attacks.registry import (
    ATTACKS,
    Attack,
    AttackParams,
    coordinate_stats,
    knowledge,
)


class AlieParams(AttackParams):
    z: float | None = None  # the shift in standard deviations; None = the paper's z_max


def z_max(n: int, f: int) -> float:
    """Baruch et al.'s z for n clients with f attackers."""
    s = n // 2 + 1 - f
    return NormalDist().inv_cdf((n - s) / n)


@ATTACKS.register("alie", AlieParams)
class Alie(Attack):
    """A little is enough: μ − z·σ, shifted just inside the benign spread."""

    omniscient = True

    def craft(self, own, benign, round, client_ids):
        n, f = len(own) + len(benign), len(own)
        z = self.params.z if self.params.z is not None else z_max(n, f)
        mean, std = coordinate_stats(knowledge(own, benign))
        crafted = {k: mean[k] - z * std[k] for k in mean}
        return [crafted] * len(own)
