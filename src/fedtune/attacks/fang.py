"""Fang, Cao, Jia, Gong, 2020, "Local Model Poisoning Attacks to Byzantine-Robust Federated
Learning" (USENIX Security): full-knowledge attacks tailored to a known aggregation rule. In
delta space (the paper's w_Re is the global adapter, so w − w_Re is a delta); s = sign of the
benign mean delta, the direction the benign clients move the model.

- ``fang_krum``: every attacker sends −λ·s; λ starts at the paper's upper bound
  (1/((m − 2c − 1)√d))·min_i Σ_{l∈Γ_i} ||Δ_l − Δ_i|| + (1/√d)·max_i ||Δ_i||, Γ_i the m − c − 2
  benign updates nearest Δ_i, m clients, c attackers, d dimensions, and is halved until Krum
  (with f = c) selects a crafted update, or λ < ``threshold``.
- ``fang_trimmed_mean``: per coordinate j, with w_max/w_min the benign maximum/minimum, each
  attacker samples in [w_max, b·w_max] (or [w_max/b, w_max] when w_max ≤ 0) where s_j < 0, and
  in [w_min/b, w_min] (or [b·w_min, w_min] when w_min ≤ 0) where s_j > 0 (b = 2): values past the
  benign extreme on the side that reverses the update. Also the paper's attack on the median.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from fedtune.algorithms.aggregation.geometry import norms, squared_distances
from fedtune.algorithms.aggregation.krum import krum_select
from fedtune.attacks.registry import (
    ATTACKS,
    Attack,
    AttackParams,
    coordinate_stats,
    knowledge,
)


class FangKrumParams(AttackParams):
    threshold: float = Field(1e-5, gt=0)  # the smallest λ tried


class FangTrimmedMeanParams(AttackParams):
    b: float = Field(2.0, gt=1)  # how far past the benign extreme the crafted values may go


def krum_lambda_bound(benign, c: int) -> float:
    """Fang et al.'s upper bound on λ against Krum (Theorem/Eq. in §4.2)."""
    m = len(benign) + c
    d = sum(t.numel() for t in benign[0].values())
    dist = squared_distances(benign).sqrt()
    near = max(1, m - c - 2)
    spread = min(float(row[torch.arange(len(benign)) != i].sort().values[:near].sum()) for i, row in enumerate(dist))
    return spread / (max(1, m - 2 * c - 1) * math.sqrt(d)) + max(norms(benign)) / math.sqrt(d)


@ATTACKS.register("fang_krum", FangKrumParams)
class FangKrum(Attack):
    """Full-knowledge attack on Krum: −λ·sign(μ) with the largest λ Krum still selects."""

    omniscient = True

    def craft(self, own, benign, round, client_ids):
        ref, c = knowledge(own, benign), len(own)
        mean, _ = coordinate_stats(ref)
        sign = {k: torch.sign(v) for k, v in mean.items()}
        lam = krum_lambda_bound(ref, c) if len(ref) > 1 else 1.0
        while True:
            crafted = {k: -lam * s for k, s in sign.items()}
            chosen = krum_select([*([crafted] * c), *ref], c, 1, "squared_l2")
            if chosen[0] < c or lam / 2 < self.params.threshold:
                break
            lam /= 2
        self.lam = lam  # for tests and reports
        return [crafted] * c


@ATTACKS.register("fang_trimmed_mean", FangTrimmedMeanParams)
class FangTrimmedMean(Attack):
    """Full-knowledge attack on trimmed mean / median: values just past the benign extremes."""

    omniscient = True

    def craft(self, own, benign, round, client_ids):
        ref, b = knowledge(own, benign), self.params.b
        out = []
        for cid in client_ids:
            gen = self.generator(round, cid)
            crafted = {}
            for key in ref[0]:
                x = torch.stack([d[key] for d in ref])
                s = torch.sign(x.mean(0))
                hi, lo = x.max(0).values, x.min(0).values
                u = torch.rand(hi.shape, generator=gen, dtype=x.dtype)
                # s < 0: push up, past the benign maximum; s >= 0: push down, past the minimum
                up_lo, up_hi = torch.where(hi > 0, hi, hi / b), torch.where(hi > 0, b * hi, hi)
                down_lo, down_hi = torch.where(lo > 0, lo / b, b * lo), torch.where(lo > 0, lo, lo)
                up = up_lo + u * (up_hi - up_lo)
                down = down_lo + u * (down_hi - down_lo)
                crafted[key] = torch.where(s < 0, up, down)
            out.append(crafted)
        return out
