"""Gossip rounds: every client trains its own adapter, then mixes it with its neighbours'.

A Strategy that declares ``personal_adapters`` (the engine keeps, evaluates and saves one adapter
per client) and answers ``mix``: each client's new adapter is Σ_j a_ij·θ_j over the trained
adapters, repeated ``gossip_steps`` times (θ ← W^K θ). No global model exists; the
engine's "global adapter" stays the common start, which the learned graph measures updates from.
The graph is a pure function of the round's updates (and of seed and round for ``random(k)``),
so nothing needs a checkpoint. What runs here is each client's own computation on what its
neighbours sent; in the embedded engine all clients share this process.
"""

from __future__ import annotations

import torch

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.decentralized import graphs
from fedtune.decentralized.config import TopologyConfig
from fedtune.decentralized.learned_graph import flat_delta, learned_rows
from fedtune.protocol import ClientInstruction, ClientUpdate, Strategy


class Gossip(Strategy):
    name = "gossip"
    personal_adapters = True

    def __init__(self, topology: TopologyConfig, num_clients: int, seed: int = 0):
        self.topology, self.num_clients, self.seed = topology, num_clients, seed
        self._report: dict = {}

    def configure_round(self, round, clients, lr, steps, global_adapter):
        return [ClientInstruction(c, round, lr, steps, start_from="personal") for c in clients]

    def aggregate(self, round, global_adapter, updates):
        return global_adapter  # no global model: each client's adapter is mixed by ``mix``

    def graph(self, round: int, start: AdapterState, updates: list[ClientUpdate]) -> torch.Tensor:
        """The round's mixing matrix over ``updates`` (in their order)."""
        n, t = len(updates), self.topology
        if t.graph == "learned":
            deltas = torch.stack([flat_delta(u.adapter, start) for u in updates])
            return learned_rows(deltas, [u.num_examples for u in updates], t.alpha)
        if t.graph == "complete":
            return graphs.uniform_rows(graphs.complete(n))
        if t.graph == "ring":
            return graphs.uniform_rows(graphs.ring(n))
        return graphs.uniform_rows(graphs.random_neighbours(n, t.random_k, self.seed, round))

    def mix(self, round: int, start: AdapterState, updates: list[ClientUpdate]) -> dict[int, AdapterState]:
        """Each client's adapter after the round's gossip, by client id (the neighbour traffic
        and the graph go to ``round_report``)."""
        w = self.graph(round, start, updates)
        adapters = [u.adapter for u in updates]
        for _ in range(self.topology.gossip_steps):
            adapters = [ops.weighted_sum(adapters, w[i].tolist()) for i in range(len(adapters))]
        # each nonzero off-diagonal weight is one adapter sent to a neighbour, per gossip step
        sent = int(((w > 0).sum() - (w.diagonal() > 0).sum()).item()) * self.topology.gossip_steps
        ids = [u.client_id for u in updates]
        self._report = {"graph": {"clients": ids, "weights": [[float(f"{x:.6g}") for x in row] for row in w.tolist()],
                                  "kind": self.topology.graph},
                        "bytes": sent * ops.num_bytes(updates[0].adapter)}
        return dict(zip(ids, adapters))

    def round_report(self) -> dict:
        return self._report
