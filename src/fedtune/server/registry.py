"""Algorithm name -> Strategy. One line per algorithm; parameters come from ``AlgorithmConfig``
and the federation size (SCAFFOLD's server update needs the total number of clients)."""

from __future__ import annotations

from fedtune.config import AlgorithmConfig
from fedtune.server.baselines import Centralized, LocalOnly
from fedtune.server.fedavg import FedAvg
from fedtune.server.strategy import Strategy

BUILDERS = {
    "fedavg": lambda a, n: FedAvg(a.weighting, a.server_lr),
    "local": lambda a, n: LocalOnly(),
    "centralized": lambda a, n: Centralized(),
}


def build_strategy(cfg: AlgorithmConfig, num_clients: int) -> Strategy:
    return BUILDERS[cfg.name](cfg, num_clients)
