"""The types every package shares: the adapter state, the messages of a round, and the Strategy
interface every FL algorithm implements.

A round is: ``configure_round`` -> one ``ClientInstruction`` per sampled client -> each client's
``LocalTrainer`` returns a ``ClientUpdate`` -> ``aggregate`` -> new global adapter. Both engines
(embedded loop, Flower) drive this interface; neither holds FL logic of its own: what an
algorithm needs from an engine (pooled data, personal adapters) it *declares* here as class
attributes, and the engines read the declarations.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fedtune.adapter_state import AdapterState

Scalar = float | int | str | bool

# ClientInstruction.config key: the adapter keys the client trains and sends, as a JSON list
# (selective layers); absent = every key
TRAIN_KEYS = "train_keys"


@dataclass
class ClientInstruction:
    """What the server asks of one client in one round."""

    client_id: int
    round: int  # 0-based
    lr: float
    steps: int
    # "global": start from the global adapter; "personal": from this client's own last adapter
    # (the local-only baseline keeps one adapter per client and never aggregates).
    start_from: str = "global"
    config: dict[str, Scalar] = field(default_factory=dict)  # e.g. {"prox_mu": 0.01}
    tensors: dict[str, AdapterState] = field(default_factory=dict)  # e.g. {"server_control": c}

    def train_keys(self, keys) -> list[str] | None:
        """The subset of ``keys`` (in their order) this client trains and sends; None: all."""
        if TRAIN_KEYS not in self.config:
            return None
        chosen = set(json.loads(self.config[TRAIN_KEYS]))
        return [k for k in keys if k in chosen]


@dataclass
class ClientUpdate:
    """What one client sends back: its trained adapter (full weights, not a delta) and metadata."""

    client_id: int
    adapter: AdapterState
    num_examples: int  # size of the client's local training set: the FedAvg weight
    metrics: dict[str, float] = field(default_factory=dict)
    tensors: dict[str, AdapterState] = field(default_factory=dict)  # e.g. {"control_delta": dc_i}
    clients: int = 1  # the clients whose mean this is (secure aggregation: the whole round's)
    # the adapter keys this client trained and sent (selective layers: the others were filled with
    # its start, and each key is reduced over the clients that trained it); None = every key
    trained: list[str] | None = None


class Strategy(ABC):
    """Server algorithm. Subclasses keep their state in tensors so checkpoints are exact.

    Declarations an engine reads (no engine names an algorithm):
    - ``pools_data``: the engine trains one client (id 0) on every client's data pooled (the
      centralized upper bound); Flower cannot run it, since no node holds the pool.
    - ``personal_adapters``: each client keeps its own adapter across rounds (stored by the
      engine after each round), evaluation averages over those adapters and the run saves one
      per client; nothing crosses the network, so no bytes are counted.
    - ``sends_client_tensors``: updates carry tensors besides the adapter, which client-level DP
      and secure aggregation do not cover.
    """

    name: str = "strategy"
    pools_data: bool = False
    personal_adapters: bool = False
    sends_client_tensors: bool = False  # clients send tensors besides their adapter (SCAFFOLD's controls)

    @property
    def communicates(self) -> bool:
        """Whether adapters travel between clients and a server (bytes are counted)."""
        return not self.personal_adapters

    def configure_round(
        self, round: int, clients: list[int], lr: float, steps: int, global_adapter: AdapterState
    ) -> list[ClientInstruction]:
        """Instructions for the sampled clients. Default: start from the global adapter."""
        return [ClientInstruction(client_id=c, round=round, lr=lr, steps=steps) for c in clients]

    @abstractmethod
    def aggregate(
        self, round: int, global_adapter: AdapterState, updates: list[ClientUpdate]
    ) -> AdapterState:
        """New global adapter from the valid updates (never empty: the engine handles that case)."""

    def mix(self, round: int, start: AdapterState, updates: list[ClientUpdate],
            run: Callable[[list], list] | None = None,
            round_starts: dict[int, AdapterState] | None = None) -> dict[int, AdapterState] | None:
        """For a strategy with ``personal_adapters`` whose clients share with each other (gossip):
        each client's adapter after sharing, by client id; None: each keeps what it trained.
        ``run`` executes the clients' own parts of the sharing where the clients live (the
        engine's ``run_mix_jobs``; None: in this process); ``round_starts``: each client's adapter
        before this round's training, by client id."""
        return None

    def round_report(self) -> dict:
        """What the last ``aggregate`` did, for the round's metrics row (e.g. the aggregation rule
        and the clients it kept); {} when there is nothing to say."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensors (safetensors-ready). Stateless strategies return {}."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} is stateless but got state keys {sorted(state)[:3]}")
