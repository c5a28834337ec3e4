"""Gossip rounds: every client trains its own adapter, then mixes it with its neighbours'.

A Strategy that declares ``personal_adapters`` (the engine keeps, evaluates and saves one adapter
per client) and answers ``mix``: each client's new adapter is Σ_j a_ij·θ_j over its neighbours'
trained adapters, repeated ``gossip_steps`` times (θ ← W^K θ). No global model exists; the
engine's "global adapter" stays the common start, which the learned graph measures updates from.

Each client's part of a step is a ``MixJob`` — the adapters it received, their example counts,
the common start — that ``mix_on_node`` turns into its mixed adapter and its graph row: the
client infers its own row (step 1) and keeps it for the later steps. The embedded engine runs
every job in this process; on Flower each job is a message to the client's SuperNode, with a
ServerApp that only relays (``flower.grid_clients``). Rows are pure functions of the round's
updates (and of seed and round for ``random(k)``), so nothing needs a checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.decentralized import graphs
from fedtune.decentralized.config import TopologyConfig
from fedtune.decentralized.learned_graph import flat_delta, learned_row
from fedtune.protocol import ClientInstruction, ClientUpdate, Strategy

log = logging.getLogger("fedtune")


@dataclass
class MixJob:
    """One client's part of a gossip step: what its neighbours sent and how to weigh it."""

    client_id: int
    members: list[int]  # the clients of its row, itself included, ascending
    adapters: list[AdapterState]  # their adapters (as trained, at the first step), same order
    sizes: list[int]  # their example counts (the learned graph's prior)
    graph: str  # topology.graph
    alpha: float  # topology.alpha
    start: AdapterState | None = None  # the common start the learned graph measures updates from
    row: list[float] | None = None  # the weights to use (the steps after the first); None: infer them
    starts: list[AdapterState] | None = None  # delta_from round: each member's adapter at the round's start


@dataclass
class Mixed:
    """A client's adapter after one gossip step and the row it mixed with (over ``members``)."""

    adapter: AdapterState
    row: list[float]


MixRunner = Callable[[list[MixJob]], list["Mixed | None"]]


def mix_on_node(job: MixJob) -> Mixed:
    """A client's own computation: its row (inferred at the first step), then the weighted sum."""
    row = job.row if job.row is not None else node_row(job)
    return Mixed(ops.weighted_sum(job.adapters, row), row)


def node_row(job: MixJob) -> list[float]:
    """The client's row: pFedGraph's learned row from the members' updates, or uniform."""
    if job.graph != "learned":
        return graphs.uniform_row(job.members)
    if job.starts is not None:  # each member's update this round
        deltas = torch.stack([flat_delta(a, s) for a, s in zip(job.adapters, job.starts)])
    elif job.start is not None:  # each member's change since the run's common start (pFedGraph)
        deltas = torch.stack([flat_delta(a, job.start) for a in job.adapters])
    else:
        raise ValueError("the learned graph needs the common start or the members' round starts")
    return learned_row(job.members.index(job.client_id), deltas, job.sizes, job.alpha).tolist()


def in_process(jobs: list[MixJob]) -> list[Mixed]:
    """Every client's job here (the embedded engine, where all clients share this process)."""
    return [mix_on_node(job) for job in jobs]


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

    def neighbours(self, round: int, n: int) -> list[list[int]]:
        """Whom each of the round's ``n`` participants (by position) hears from."""
        t = self.topology
        if t.graph in ("learned", "complete"):
            return graphs.complete(n)
        if t.graph == "ring":
            return graphs.ring(n)
        return graphs.random_neighbours(n, t.random_k, self.seed, round)

    def mix(self, round: int, start: AdapterState, updates: list[ClientUpdate], run: MixRunner | None = None,
            round_starts: dict[int, AdapterState] | None = None) -> dict[int, AdapterState]:
        """Each client's adapter after the round's gossip, by client id; ``run`` executes the
        clients' jobs where they live (default: here); ``round_starts`` are the clients' adapters
        before this round's training. A client whose job got no answer keeps its adapter (named
        under ``unmixed`` in ``round_report``, with the graph and traffic)."""
        run, t = run or in_process, self.topology
        learned, by_round = t.graph == "learned", t.delta_from == "round"
        if learned and by_round and round_starts is None:
            raise ValueError("topology.delta_from=round needs each client's adapter at the round's start")
        ids, sizes = [u.client_id for u in updates], [u.num_examples for u in updates]
        members = [sorted({i, *near}) for i, near in enumerate(self.neighbours(round, len(ids)))]
        adapters, rows, unmixed = [u.adapter for u in updates], [None] * len(ids), []
        for _ in range(t.gossip_steps):
            jobs = [MixJob(ids[i], [ids[j] for j in m], [adapters[j] for j in m], [sizes[j] for j in m], t.graph,
                           t.alpha, start if learned and not by_round else None, rows[i],
                           [round_starts[ids[j]] for j in m] if learned and by_round and rows[i] is None else None)
                    for i, m in enumerate(members)]
            results = run(jobs)
            for i, result in enumerate(results):
                if result is None:  # it keeps its adapter: weight 1 on itself from now on
                    unmixed.append(ids[i])
                    rows[i] = [float(j == i) for j in members[i]]
                else:
                    adapters[i], rows[i] = result.adapter, result.row
        w = torch.zeros(len(ids), len(ids), dtype=torch.float64)
        for i, m in enumerate(members):
            w[i, m] = torch.tensor(rows[i], dtype=torch.float64)
        # each nonzero off-diagonal weight is one adapter sent to a neighbour, per gossip step
        sent = int(((w > 0).sum() - (w.diagonal() > 0).sum()).item()) * t.gossip_steps
        self._report = {"graph": {"clients": ids, "weights": [[float(f"{x:.6g}") for x in row] for row in w.tolist()],
                                  "kind": t.graph},
                        "bytes": sent * ops.num_bytes(updates[0].adapter)}
        if unmixed:
            log.warning("round %d: no mixing answer from clients %s; they keep their trained adapters",
                        round, sorted(set(unmixed)))
            self._report["unmixed"] = sorted(set(unmixed))
        return dict(zip(ids, adapters))

    def round_report(self) -> dict:
        return self._report
