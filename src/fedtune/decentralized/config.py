"""The ``topology`` section: who mixes with whom (docs/decentralized.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from fedtune.schema import Section

GRAPH = re.compile(r"^(complete|ring|learned|random\((\d+)\))$")


class TopologyConfig(Section):
    """``mode: server`` (default) aggregates on a server; ``mode: decentralized`` keeps one adapter
    per client and mixes it with its neighbours' every round through ``graph``:
    ``complete`` | ``ring`` | ``random(k)`` (k random neighbours, redrawn each round from the seed)
    | ``learned`` (each row re-inferred every round from update similarity, pFedGraph's QP)."""

    mode: Literal["server", "decentralized"] = "server"
    graph: str = "learned"
    alpha: float = Field(0.8, gt=0)  # learned: weight of the data-size prior against similarity (pFedGraph)
    gossip_steps: int = Field(1, ge=1)  # mixing steps per round, each one neighbour exchange
    # learned: the update whose similarity sets the graph. round (default) = each adapter minus
    # the client's own adapter at this round's start (what it learned this round); start = minus
    # the run's common start (pFedGraph's), whose deltas mixing makes alike, so the graph drifts
    # to uniform (docs/benchmarks.md, "Decentralized: clusters and the learned graph")
    delta_from: Literal["round", "start"] = "round"

    @field_validator("graph")
    @classmethod
    def _known_graph(cls, v: str) -> str:
        if not GRAPH.match(v.replace(" ", "")):
            raise ValueError(f"unknown graph {v!r}; choose complete, ring, random(k) or learned")
        return v.replace(" ", "")

    @property
    def random_k(self) -> int | None:
        """k of ``random(k)``, else None."""
        m = GRAPH.match(self.graph)
        return int(m.group(2)) if m and m.group(2) else None
