"""The fixed graphs: whom each client hears from, and the uniform weights it gives itself and
its neighbours (so every row sums to 1)."""

from __future__ import annotations

import random


def uniform_row(members: list[int]) -> list[float]:
    """Equal weights over a client's row: itself and its neighbours."""
    return [1.0 / len(members)] * len(members)


def complete(n: int) -> list[list[int]]:
    return [[j for j in range(n) if j != i] for i in range(n)]


def ring(n: int) -> list[list[int]]:
    """Each client's two ring neighbours (one for two clients, none for one)."""
    return [sorted({(i - 1) % n, (i + 1) % n} - {i}) for i in range(n)]


def random_neighbours(n: int, k: int, seed: int, round: int) -> list[list[int]]:
    """``k`` neighbours per client drawn from (seed, round) alone, so a resumed run draws the same."""
    if not 1 <= k < n:
        raise ValueError(f"topology.graph random({k}): k must be between 1 and {n - 1} for {n} clients")
    rng = random.Random(f"{seed}/{round}/gossip")
    return [sorted(rng.sample([j for j in range(n) if j != i], k)) for i in range(n)]
