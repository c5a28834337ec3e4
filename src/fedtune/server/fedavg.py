"""FedAvg (McMahan et al., 2017) with an optional server learning rate.

x <- x + eta * sum_i w_i (y_i - x), w_i = n_i / sum_j n_j (or 1/K with ``weighting: uniform``).
With eta = 1 this is the weighted average of the client adapters, as in OpenFedLLM's ``fedavg``.
"""

from __future__ import annotations

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.server.strategy import ClientUpdate, Strategy, example_weights


def weighted_delta(global_adapter: AdapterState, updates: list[ClientUpdate], weighting: str) -> AdapterState:
    """sum_i w_i (y_i - x): the FedAvg pseudo-gradient (negated) shared by the FedAvg family."""
    weights = example_weights(updates, weighting)
    return ops.weighted_sum([ops.subtract(u.adapter, global_adapter) for u in updates], weights)


class FedAvg(Strategy):
    name = "fedavg"

    def __init__(self, weighting: str = "examples", server_lr: float = 1.0):
        self.weighting = weighting
        self.server_lr = server_lr

    def aggregate(self, round, global_adapter, updates):
        if self.server_lr == 1.0:
            # Exactly the weighted average (no x + (avg - x) round-off).
            return ops.weighted_sum([u.adapter for u in updates], example_weights(updates, self.weighting))
        return ops.add(global_adapter, weighted_delta(global_adapter, updates, self.weighting), self.server_lr)
