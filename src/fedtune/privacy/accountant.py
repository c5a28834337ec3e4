"""(ε, δ) of the subsampled Gaussian mechanism by Rényi DP (Mironov 2017; Mironov, Talwar &
Zhang 2019), through Opacus' RDP analysis.

Stateless: ε depends only on the noise multiplier z, the sampling rate q and the number of
releases, so a resumed run recomputes it from the rounds (or steps) it has done, and nothing
about the accountant needs saving. Opacus is the optional ``privacy`` extra.
"""

from __future__ import annotations

import math
from functools import lru_cache

from fedtune.schema import ConfigError


def _opacus():
    try:
        from opacus.accountants import RDPAccountant, utils
        from opacus.accountants.analysis import rdp
    except ImportError as e:  # pragma: no cover - the dev install has it
        raise ConfigError("privacy needs Opacus: pip install 'fedtune[privacy]'") from e
    return rdp, utils, RDPAccountant.DEFAULT_ALPHAS


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` compositions of the Gaussian mechanism with noise multiplier z, each on a
    Poisson sample of rate q (q = 1: no amplification). 0 steps spend nothing; z = 0 is ∞."""
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    rdp, _, orders = _opacus()
    curve = rdp.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders)
    eps, _ = rdp.get_privacy_spent(orders=orders, rdp=curve, delta=delta)
    return float(eps)


@lru_cache(maxsize=256)
def calibrate(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier (to Opacus' tolerance 0.01 in ε) that keeps ``steps``
    releases within ``target_epsilon`` (Opacus' binary search, RDP accountant). Cached: every
    client and every round of a run asks for the same few values."""
    _, utils, _ = _opacus()
    return float(utils.get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                            sample_rate=sample_rate, steps=steps, accountant="rdp"))
