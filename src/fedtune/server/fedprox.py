"""FedProx (Li et al., 2020, "Federated Optimization in Heterogeneous Networks").

Server: FedAvg. Client: local loss + mu/2 * ||theta - theta_global||^2 over the trainable (LoRA)
parameters, added by the FedProx hook in fedtune/client/fedprox.py. OpenFedLLM's default mu=0.01.
"""

from __future__ import annotations

from fedtune.server.fedavg import FedAvg


class FedProx(FedAvg):
    name = "fedprox"

    def __init__(self, weighting: str = "examples", server_lr: float = 1.0, mu: float = 0.01):
        super().__init__(weighting, server_lr)
        self.mu = mu

    def configure_round(self, round, clients, lr, steps, global_adapter):
        instructions = super().configure_round(round, clients, lr, steps, global_adapter)
        for ins in instructions:
            ins.config["prox_mu"] = self.mu
        return instructions
