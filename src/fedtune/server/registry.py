"""Algorithm name -> Strategy. One line per algorithm; parameters come from ``AlgorithmConfig``
and the federation size (SCAFFOLD's server update needs the total number of clients)."""

from __future__ import annotations

from fedtune.config import AlgorithmConfig
from fedtune.server.baselines import Centralized, LocalOnly
from fedtune.server.fedavg import FedAvg
from fedtune.server.fedavgm import FedAvgM
from fedtune.server.fedopt import FedAdagrad, FedAdam, FedYogi
from fedtune.server.fedprox import FedProx
from fedtune.server.scaffold import Scaffold
from fedtune.server.strategy import Strategy


def _fedopt(cls):
    return lambda a, n: cls(a.weighting, a.eta, a.tau, a.beta1, a.beta2, a.variant, a.bias_correction)


BUILDERS = {
    "fedavg": lambda a, n: FedAvg(a.weighting, a.server_lr),
    "local": lambda a, n: LocalOnly(),
    "centralized": lambda a, n: Centralized(),
    "fedprox": lambda a, n: FedProx(a.weighting, a.server_lr, a.prox_mu),
    "scaffold": lambda a, n: Scaffold(n, a.weighting, a.server_lr, a.scaffold_option),
    "fedavgm": lambda a, n: FedAvgM(a.weighting, a.server_lr, a.server_momentum, a.beta1, a.variant),
    "fedadagrad": _fedopt(FedAdagrad),
    "fedyogi": _fedopt(FedYogi),
    "fedadam": _fedopt(FedAdam),
}


def build_strategy(cfg: AlgorithmConfig, num_clients: int) -> Strategy:
    return BUILDERS[cfg.name](cfg, num_clients)
