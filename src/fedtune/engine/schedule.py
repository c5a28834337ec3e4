"""Per-round decisions that are pure functions of the config: learning rate and client sampling."""

from __future__ import annotations

import math
import random

from fedtune.config import RunConfig


def round_lr(cfg: RunConfig, round: int) -> float:
    """Cosine from ``lr`` to ``min_lr`` across rounds, constant inside a round (OpenFedLLM)."""
    t = cfg.train
    if t.lr_schedule == "constant":
        return t.lr
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + math.cos(math.pi * round / cfg.federation.rounds))


def sample_clients(cfg: RunConfig, round: int) -> list[int]:
    """K of N clients, from a RNG of its own seeded by (sampling seed, round) — never the global one."""
    fed = cfg.federation
    k = fed.per_round()
    if k >= fed.num_clients:
        return list(range(fed.num_clients))
    seed = cfg.seed if fed.sampling_seed is None else fed.sampling_seed
    return sorted(random.Random(f"{seed}/{round}/sample").sample(range(fed.num_clients), k))
