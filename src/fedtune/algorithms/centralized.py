"""Centralized training: the upper bound every FL comparison needs.

All clients' data pooled in one client (id 0) that gets the federation's whole compute per
round: the sampled clients' steps added together. Declares ``pools_data``: the engine builds the
pool; a federated deployment cannot run it.
"""

from __future__ import annotations

from fedtune.algorithms.baseline import Baseline
from fedtune.algorithms.registry import ALGORITHMS
from fedtune.protocol import ClientInstruction

POOL = 0  # the client id of the pooled data


@ALGORITHMS.register("centralized")
class Centralized(Baseline):
    """Baseline: train on all data pooled in one place, with the federation's compute."""

    name = "centralized"
    pools_data = True

    def configure_round(self, round, clients, lr, steps, global_adapter):
        return [ClientInstruction(POOL, round, lr, steps * len(clients))]

    def aggregate(self, round, global_adapter, updates):
        (update,) = updates  # the pooled client
        return update.adapter
