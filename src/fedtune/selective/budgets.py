"""Each client's layer budget b_i: equal, or the authors' heterogeneous truncated-normal draw."""

from __future__ import annotations

from scipy.stats import truncnorm

from fedtune.client.batching import round_rng
from fedtune.selective.config import SelectiveConfig


def budget(cfg: SelectiveConfig, client: int, num_layers: int, seed: int) -> int:
    """b_i, at most the number of candidate layers. Heterogeneous: the authors' server.py draw,
    ``round(truncnorm(a=b-1, b=spread+1, loc=1, scale=1))`` (so b_i ∈ [b, spread+2], mostly near
    b), by inverse CDF from a uniform of (seed, client): fixed for the run, as in the code, and
    the same on every engine and after a resume."""
    if cfg.budgets == "equal":
        drawn = cfg.layers
    else:
        u = round_rng(seed, 0, client, "selective-budget").random()
        drawn = round(float(truncnorm.ppf(u, a=cfg.layers - 1, b=cfg.spread + 1, loc=1, scale=1)))
    return max(1, min(drawn, num_layers))
