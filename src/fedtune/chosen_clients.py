"""Which clients play a role in a simulation (attackers, malicious data holders): the listed ids,
or round(share · N) of them (at least one) drawn by a RNG of their own keyed by the run seed and
the role, so every engine, every node and a resumed run agree without exchanging anything."""

from __future__ import annotations

import random


def chosen_clients(spec: list[int] | float, num_clients: int, seed: int, role: str) -> list[int]:
    if isinstance(spec, list):
        return sorted(set(spec))
    k = max(1, round(spec * num_clients))
    return sorted(random.Random(f"{seed}/{role}").sample(range(num_clients), k))
