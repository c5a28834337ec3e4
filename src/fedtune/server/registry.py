"""Algorithm name -> Strategy. One line per algorithm; parameters come from ``AlgorithmConfig``."""

from __future__ import annotations

from fedtune.config import AlgorithmConfig
from fedtune.server.baselines import Centralized, LocalOnly
from fedtune.server.fedavg import FedAvg
from fedtune.server.strategy import Strategy

BUILDERS = {
    "fedavg": lambda a: FedAvg(a.weighting, a.server_lr),
    "local": lambda a: LocalOnly(),
    "centralized": lambda a: Centralized(),
}


def build_strategy(cfg: AlgorithmConfig) -> Strategy:
    return BUILDERS[cfg.name](cfg)
