"""SCAFFOLD (Karimireddy et al., 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning"), server side.

Clients correct every local step by (c - c_i) and return their control-variate change dc_i
(fedtune/client/scaffold.py). The server:
    x <- x + server_lr * sum_i w_i (y_i - x)       (the paper averages uniformly; ``weighting``)
    c <- c + (1/N) * sum_{i in S} dc_i             (N = all clients, as in the paper and OpenFedLLM)
Client control variates stay with the clients (on disk), so server memory is one adapter-sized c.
"""

from __future__ import annotations

from fedtune import adapter_state as ops
from fedtune.server.fedavg import weighted_delta
from fedtune.server.strategy import Strategy

SERVER_CONTROL = "server_control"
CONTROL_DELTA = "control_delta"


class Scaffold(Strategy):
    name = "scaffold"

    def __init__(self, num_clients: int, weighting="examples", server_lr=1.0, option=2):
        self.num_clients, self.weighting, self.server_lr, self.option = num_clients, weighting, server_lr, option
        self.control: dict | None = None

    def configure_round(self, round, clients, lr, steps, global_adapter):
        if self.control is None:
            self.control = ops.zeros_like(global_adapter)
        instructions = super().configure_round(round, clients, lr, steps, global_adapter)
        for ins in instructions:
            ins.config["scaffold_option"] = self.option
            ins.tensors[SERVER_CONTROL] = self.control
        return instructions

    def aggregate(self, round, global_adapter, updates):
        new = ops.add(global_adapter, weighted_delta(global_adapter, updates, self.weighting), self.server_lr)
        total = ops.weighted_sum([u.tensors[CONTROL_DELTA] for u in updates], [1.0] * len(updates))
        self.control = ops.add(self.control, total, 1.0 / self.num_clients)
        return new

    def state_dict(self):
        return {f"control/{k}": v for k, v in (self.control or {}).items()}

    def load_state_dict(self, state):
        self.control = {k.split("/", 1)[1]: v.clone() for k, v in state.items()} or None
