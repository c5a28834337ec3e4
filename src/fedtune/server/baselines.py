"""The two bounds every FL comparison needs, as strategies.

``local``: each client trains only its own adapter and never aggregates (the lower bound;
evaluated as the mean over clients' adapters). ``centralized``: all data pooled in one client
that gets the federation's whole compute per round (the upper bound); the engine pools the data.
"""

from __future__ import annotations

from fedtune.server.strategy import ClientInstruction, Strategy


class LocalOnly(Strategy):
    name = "local"

    def configure_round(self, round, clients, lr, steps, global_adapter):
        return [ClientInstruction(c, round, lr, steps, start_from="personal") for c in clients]

    def aggregate(self, round, global_adapter, updates):
        return global_adapter  # nothing is shared; each client's adapter lives in its personal state


class Centralized(Strategy):
    name = "centralized"

    def aggregate(self, round, global_adapter, updates):
        (update,) = updates  # one pooled client
        return update.adapter
