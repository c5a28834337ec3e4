"""Each attack against its definition on hand-built updates."""

from __future__ import annotations

import pytest
import torch

from fedtune.algorithms.aggregation.geometry import squared_distances
from fedtune.algorithms.aggregation.krum import krum_select
from fedtune.attacks import ATTACKS, attacker_ids
from fedtune.attacks.alie import z_max


def _attack(method, **params):
    return ATTACKS[method].target(ATTACKS.config(method, **params), seed=0)


def _benign(n=8, d=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=gen, dtype=torch.float64)
    return [{"w": base + 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)} for _ in range(n)]


def test_attackers_are_listed_or_drawn_from_the_seed():
    assert attacker_ids(ATTACKS.config("sign_flip", clients=[3, 1, 3]), 10, 0) == [1, 3]
    share = ATTACKS.config("sign_flip", clients=0.2)
    drawn = attacker_ids(share, 10, 0)
    assert len(drawn) == 2 and len(set(drawn)) == 2 and all(0 <= c < 10 for c in drawn)
    assert drawn == attacker_ids(share, 10, 0)  # the same seed draws the same attackers
    assert any(attacker_ids(share, 10, s) != drawn for s in range(1, 6))  # the seed decides who


def test_sign_flip_scaling_and_gaussian_use_only_the_own_update():
    own = [{"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}]
    assert _attack("sign_flip", scale=2.0).craft(own, [], 0, [0])[0]["w"].tolist() == [-2.0, 4.0]
    assert _attack("scaling", factor=10.0).craft(own, [], 0, [0])[0]["w"].tolist() == [10.0, -20.0]
    big = [{"w": torch.linspace(-1, 1, 20001, dtype=torch.float64)}]
    g = _attack("gaussian", shift=0.1)
    noise = g.craft(big, [], 5, [2])[0]["w"]
    assert abs(float(noise.mean()) - 0.1) < 0.02 and abs(float(noise.std()) - float(big[0]["w"].std())) < 0.02
    assert torch.equal(noise, g.craft(big, [], 5, [2])[0]["w"])  # stateless: (seed, round, client)
    assert not torch.equal(noise, g.craft(big, [], 6, [2])[0]["w"])
    assert not any(ATTACKS[m].target.omniscient for m in ("sign_flip", "scaling", "gaussian"))


def test_alie_is_mean_minus_z_std_with_the_papers_z():
    benign = _benign()
    own = _benign(2, seed=1)
    crafted = _attack("alie").craft(own, benign, 0, [8, 9])
    x = torch.stack([b["w"] for b in benign])
    z = z_max(10, 2)  # n = 10 clients, f = 2: s = 4, z = Φ⁻¹(0.6)
    assert z == pytest.approx(0.2533, abs=1e-4)
    torch.testing.assert_close(crafted[0]["w"], x.mean(0) - z * x.std(0))
    assert crafted[0] is crafted[1]  # colluding attackers send the same update


def test_ipm_reverses_the_benign_mean():
    benign = _benign()
    crafted = _attack("ipm", epsilon=0.5).craft(_benign(1, seed=2), benign, 0, [8])[0]["w"]
    mean = torch.stack([b["w"] for b in benign]).mean(0)
    torch.testing.assert_close(crafted, -0.5 * mean)
    assert float(crafted @ mean) < 0


@pytest.mark.parametrize("method", ["min_max", "min_sum"])
def test_min_max_and_min_sum_gamma_is_the_largest_within_the_constraint(method):
    benign = _benign()
    attack = _attack(method)
    crafted = attack.craft(_benign(2, seed=3), benign, 0, [8, 9])[0]
    d = squared_distances([crafted, *benign])
    if method == "min_max":
        lhs, rhs = float(d[0, 1:].max()), float(d[1:, 1:].max())
    else:
        lhs, rhs = float(d[0, 1:].sum()), float(d[1:, 1:].sum(1).max())
    assert attack.gamma > 0 and lhs <= rhs
    # tight: a slightly larger γ breaks the constraint
    mean = torch.stack([b["w"] for b in benign]).mean(0)
    std = torch.stack([b["w"] for b in benign]).std(0)
    bigger = {"w": mean - (attack.gamma + 1e-3) * std}
    d2 = squared_distances([bigger, *benign])
    over = float(d2[0, 1:].max()) if method == "min_max" else float(d2[0, 1:].sum())
    assert over > rhs


def test_fang_krum_is_selected_by_krum():
    """Where benign updates spread around a small common direction (noisy SGD), the crafted
    update −λ·sign(μ) with the largest λ found is the one Krum selects."""
    gen = torch.Generator().manual_seed(4)
    base = 0.1 * torch.randn(50, generator=gen, dtype=torch.float64)
    benign = [{"w": base + torch.randn(50, generator=gen, dtype=torch.float64)} for _ in range(8)]
    attack = _attack("fang_krum")
    crafted = attack.craft([{"w": base}] * 2, benign, 0, [8, 9])
    assert attack.lam > 1e-3
    assert krum_select([*crafted, *benign], 2, 1, "squared_l2")[0] in (0, 1)  # Krum picks an attacker
    sign = torch.sign(torch.stack([b["w"] for b in benign]).mean(0))
    torch.testing.assert_close(crafted[0]["w"], -attack.lam * sign)
    # the largest λ: doubling it, Krum would no longer pick the crafted update
    doubled = {"w": -2 * attack.lam * sign}
    assert krum_select([doubled, doubled, *benign], 2, 1, "squared_l2")[0] not in (0, 1)


def test_fang_trimmed_mean_lands_past_the_benign_extremes_against_the_update():
    benign = _benign()
    crafted = _attack("fang_trimmed_mean", b=2.0).craft(_benign(2, seed=5), benign, 3, [8, 9])
    x = torch.stack([b["w"] for b in benign])
    s, hi, lo = torch.sign(x.mean(0)), x.max(0).values, x.min(0).values
    for c in crafted:
        w = c["w"]
        assert bool(((s < 0) <= (w >= torch.minimum(hi, hi / 2) - 1e-12)).all())
        assert bool(((s > 0) <= (w <= torch.maximum(lo, lo / 2) + 1e-12)).all())
        assert bool(((s < 0) <= (w >= hi - 1e-12) | (hi <= 0)).all())
    assert not torch.equal(crafted[0]["w"], crafted[1]["w"])  # each attacker samples its own values
