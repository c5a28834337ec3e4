"""The attack registry, the attack interface and the ``attack`` config section.

A simulated Byzantine client trains honestly, then replaces its update with a crafted delta.
An attack is one file in this package: a parameter model (with ``clients``: who attacks) and a
class registered with ``@ATTACKS.register(NAME, Params)`` whose ``craft`` returns one malicious
delta per attacker of the round. ``omniscient`` attacks also see the round's benign deltas
(the colluding, full-knowledge setting of ALIE, IPM, Min-Max/Min-Sum and Fang et al.); the
others see only their own honest delta, so a Flower node can run them alone.
"""

from __future__ import annotations

import random

import torch
from pydantic import field_validator

from fedtune.algorithms.aggregation.delta import Delta
from fedtune.chosen_clients import chosen_clients
from fedtune.schema import Registry, Section

ATTACKS = Registry("attack", tag="method")


class AttackParams(Section):
    """Who attacks: a list of client ids, or a share of all clients (drawn from the run seed)."""

    clients: list[int] | float = 0.2

    @field_validator("clients")
    @classmethod
    def _valid(cls, v):
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError("a share must be in (0, 1); use a list for client ids")
        if isinstance(v, list) and any(c < 0 for c in v):
            raise ValueError("client ids are >= 0")
        return v


def attacker_ids(params: AttackParams, num_clients: int, seed: int) -> list[int]:
    """The attacking clients: the listed ids, or round(share · N) (at least one) drawn with a RNG of
    their own seeded by the run seed, so every engine and a resumed run agree."""
    return chosen_clients(params.clients, num_clients, seed, "attackers")


class Attack:
    """Base of every attack: ``craft(own, benign, round, client_ids)`` -> one delta per attacker.

    ``own`` are the attackers' honest deltas this round, ``benign`` the benign clients' (empty
    unless ``omniscient``), ``client_ids`` the attackers' ids (for per-attacker randomness)."""

    omniscient = False

    def __init__(self, params: AttackParams, seed: int = 0):
        self.params, self.seed = params, seed

    def generator(self, round: int, client_id: int) -> torch.Generator:
        """Randomness of one attacker in one round, a pure function of (seed, round, client)."""
        return torch.Generator().manual_seed(random.Random(f"{self.seed}/{round}/{client_id}/attack").getrandbits(63))

    def craft(self, own: list[Delta], benign: list[Delta], round: int, client_ids: list[int]) -> list[Delta]:
        raise NotImplementedError


def coordinate_stats(deltas: list[Delta]) -> tuple[Delta, Delta]:
    """Coordinate-wise mean and standard deviation (unbiased; 0 for a single delta)."""
    mean, std = {}, {}
    for key in deltas[0]:
        x = torch.stack([d[key] for d in deltas])
        mean[key] = x.mean(0)
        std[key] = x.std(0) if len(deltas) > 1 else torch.zeros_like(mean[key])
    return mean, std


def knowledge(own: list[Delta], benign: list[Delta]) -> list[Delta]:
    """The deltas an omniscient attacker estimates the benign distribution from: the benign
    clients', or its own honest ones when every sampled client attacks."""
    return benign or own

