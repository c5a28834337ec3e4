"""Gaussian-noise attack (FederatedScope ``gaussian_attack_trainer``), on the update.

FederatedScope replaces every local gradient with N(mean + 0.1, std²), mean and std taken over
all of the step's gradient entries. fedtune attacks the update instead (its attacks act between
local training and the upload): the attacker's delta is replaced with N(μ + shift, σ²) per
entry, μ and σ the mean and standard deviation over all entries of its honest delta. The
difference: one draw per round instead of one per step. Not omniscient.
"""

from __future__ import annotations

import torch

from fedtune.attacks.registry import ATTACKS, Attack, AttackParams


class GaussianParams(AttackParams):
    shift: float = 0.1  # added to the mean (FederatedScope's +0.1)


@ATTACKS.register("gaussian", GaussianParams)
class Gaussian(Attack):
    """Replace the update with Gaussian noise of its own mean (+ shift) and spread."""

    def craft(self, own, benign, round, client_ids):
        out = []
        for delta, cid in zip(own, client_ids):
            flat = torch.cat([t.reshape(-1) for t in delta.values()])
            mu, sigma = float(flat.mean()) + self.params.shift, float(flat.std())
            gen = self.generator(round, cid)
            out.append({k: mu + sigma * torch.randn(t.shape, generator=gen, dtype=t.dtype) for k, t in delta.items()})
        return out
