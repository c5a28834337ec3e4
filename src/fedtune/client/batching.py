"""Which examples a client trains on in a round, and how they are batched.

Stateless by design: the draw depends only on (seed, round, client), so a resumed run draws the
same batches as an uninterrupted one without saving any sampler state. Examples are drawn as
consecutive shuffled epochs (no repeats until every example was seen), then grouped by length
so padding wastes little compute, then the micro-batches are shuffled.
"""

from __future__ import annotations

import random


def round_rng(seed: int, round: int, client_id: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}/{round}/{client_id}/{purpose}")


def draw_indices(n: int, count: int, rng: random.Random) -> list[int]:
    """``count`` indices from range(n), epoch by epoch without replacement."""
    out: list[int] = []
    while len(out) < count:
        perm = list(range(n))
        rng.shuffle(perm)
        out.extend(perm[: count - len(out)])
    return out


def length_grouped_batches(indices: list[int], lengths: list[int], batch_size: int, rng: random.Random,
                           group: int = 32) -> list[list[int]]:
    """Split into micro-batches of similar length: sort within windows of ``group`` batches."""
    window = batch_size * group
    batches = []
    for start in range(0, len(indices), window):
        chunk = sorted(indices[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
