"""Canaries: random secrets planted in some clients' training data to measure how much of it the
trained model memorizes (Carlini, Liu, Erlingsson, Kos, Song, USENIX Security 2019, "The Secret
Sharer: Evaluating and Testing Unintended Memorization in Neural Networks").

Each canary is an SFT record: the prompt ``data.canaries.prefix``, answered with a random digit
string. The canaries are generated statelessly from the run seed, the client and the canary's
index, so the evaluation (``eval/canary_exposure.py``) regenerates them from the config alone.
They are appended, ``repeats`` copies each, to the chosen clients' training split only: every
test set stays exactly as it is without canaries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import Field, field_validator

from fedtune.chosen_clients import chosen_clients
from fedtune.data.federated import ClientData, FederatedData
from fedtune.schema import ConfigError, Section


class CanaryConfig(Section):
    """Secrets planted in chosen clients' training data (``data.canaries``; docs/privacy.md)."""

    clients: list[int] | float = 0.1  # client ids, or a share of the clients drawn from the seed
    per_client: int = Field(1, ge=1)  # canaries per chosen client
    repeats: int = Field(5, ge=1)  # copies of each canary in the client's training split
    digits: int = Field(6, ge=1, le=18)  # secret length; the randomness space has 10**digits secrets
    prefix: str = "My secret code is"  # the prompt the secret answers
    candidates: int = Field(1000, ge=1)  # random secrets each canary is ranked against at evaluation

    @field_validator("clients")
    @classmethod
    def _share(cls, v):
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError("a share of the clients must be in (0, 1]; use a list for client ids")
        return v


@dataclass(frozen=True)
class Canary:
    client: int  # index of the client (FederatedData.clients) whose training data holds it
    index: int  # k-th canary of that client
    prompt: str
    secret: str

    @property
    def name(self) -> str:
        return f"client_{self.client}#{self.index}"

    def record(self, secret: str | None = None) -> dict:
        """The SFT record that plants it (or the same prompt answered with another ``secret``)."""
        return {"messages": [{"role": "user", "content": self.prompt},
                             {"role": "assistant", "content": self.secret if secret is None else secret}],
                "category": "canary"}


def random_secret(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(digits))


def make_canaries(cfg: CanaryConfig, num_clients: int, seed: int) -> list[Canary]:
    """The run's canaries, the same on every call with the same config, client count and seed."""
    if isinstance(cfg.clients, list):
        bad = [c for c in cfg.clients if not 0 <= c < num_clients]
        if bad:
            raise ConfigError(f"data.canaries.clients: client {bad[0]} does not exist ({num_clients} clients)")
    return [Canary(c, k, cfg.prefix, random_secret(random.Random(f"fedtune-canary-{seed}-{c}-{k}"), cfg.digits))
            for c in chosen_clients(cfg.clients, num_clients, seed, "canary") for k in range(cfg.per_client)]


def plant_canaries(data: FederatedData, cfg: CanaryConfig, seed: int) -> FederatedData:
    """``data`` with ``repeats`` copies of each canary appended to its client's training split
    (the batcher shuffles), counted per client as ``canaries.planted`` in the data report."""
    if data.kind != "sft":
        raise ConfigError(f"data.canaries: canaries are SFT records, but this run trains on {data.kind} data")
    canaries = make_canaries(cfg, data.num_clients, seed)
    steps = list(data.report.get("steps", []))
    clients = list(data.clients)
    for c in sorted({k.client for k in canaries}):
        client = clients[c]
        planted = [k.record() for k in canaries if k.client == c for _ in range(cfg.repeats)]
        clients[c] = ClientData(client.client_id, client.name, client.train + planted, client.test)
        steps.append({"client": client.name, "step": "canaries.planted", "changed": len(planted)})
    return FederatedData(data.kind, clients, data.global_test, {**data.report, "steps": steps})
