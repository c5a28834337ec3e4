"""Local-only training: the lower bound every FL comparison needs.

Each client trains only its own adapter, round after round, and nothing is aggregated or sent.
Declares ``personal_adapters``: the engine keeps each client's adapter, evaluates the mean over
clients' adapters, and saves one adapter per client.
"""

from __future__ import annotations

from fedtune.algorithms.baseline import Baseline
from fedtune.algorithms.registry import ALGORITHMS
from fedtune.protocol import ClientInstruction


@ALGORITHMS.register("local")
class LocalOnly(Baseline):
    """Baseline: every client trains its own adapter and never shares it."""

    name = "local"
    personal_adapters = True

    def configure_round(self, round, clients, lr, steps, global_adapter):
        return [ClientInstruction(c, round, lr, steps, start_from="personal") for c in clients]

    def aggregate(self, round, global_adapter, updates):
        return global_adapter  # nothing is shared; each client's adapter lives in its personal state
