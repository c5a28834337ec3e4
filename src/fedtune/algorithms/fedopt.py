"""The adaptive server optimizers' shared rule (FedAdagrad, FedYogi, FedAdam each in its own file).

``variant: reddi`` — Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2:
    d = reduce_i(y_i - x)                      (weighted by ``aggregation.weighting``; the paper averages uniformly)
    m <- beta1 * m + (1 - beta1) * d            (m starts at 0)
    v <- v + d^2                                FedAdagrad
    v <- v - (1 - beta2) * d^2 * sign(v - d^2)  FedYogi
    v <- beta2 * v + (1 - beta2) * d^2          FedAdam
    x <- x + eta * m / (sqrt(v) + tau)          (v starts at 0, as in Flower)
  ``bias_correction: true`` scales eta by sqrt(1 - beta2^t) / (1 - beta1^t) (Adam's correction,
  t = aggregation count), which is what Flower's FedAdam does. FedAdagrad uses no momentum
  (m = d, i.e. beta1 = 0 in Algorithm 2), as Flower's FedAdagrad does.
``variant: openfedllm`` — OpenFedLLM's fed_global.py, to reproduce published numbers:
    d = unweighted mean_i(y_i - x); v starts at tau^2; no bias correction;
    FedAdagrad: m = d, v <- v + m^2;  FedYogi/FedAdam: m = d in round 0, else EMA as above,
    and the second moment uses m^2 (not d^2): Yogi v <- v - (1 - beta2) m^2 sign(v - m^2),
    Adam v <- beta2 v + (1 - beta2) m^2.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from fedtune.adapter_state import AdapterState
from fedtune.algorithms.aggregating import AggregatingStrategy
from fedtune.schema import Section


class FedOptParams(Section):
    eta: float = Field(1e-2, gt=0)  # server learning rate
    tau: float = Field(1e-3, gt=0)  # adaptivity (epsilon)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    bias_correction: bool = False  # Adam's bias correction of eta (as Flower's FedAdam does)
    variant: Literal["reddi", "openfedllm"] = "reddi"  # the paper, or OpenFedLLM's code


class FedOpt(AggregatingStrategy):
    """Shared state and update rule; subclasses define the second-moment update."""

    name = "fedopt"

    def __init__(self, params, aggregation=None, num_clients: int = 1, seed: int = 0, privacy=None):
        super().__init__(params, aggregation, num_clients, seed, privacy)
        self.m: AdapterState = {}
        self.v: AdapterState = {}
        self.t = 0  # aggregations so far

    @classmethod
    def fixed_weighting(cls, params):
        return "uniform" if params.variant == "openfedllm" else None  # OpenFedLLM averages uniformly

    def second_moment(self, v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def first_moment(self, key: str, d: torch.Tensor) -> torch.Tensor:
        if self.params.variant == "openfedllm" and self.t == 0:
            return d
        m = self.m.get(key, torch.zeros_like(d))
        return self.params.beta1 * m + (1 - self.params.beta1) * d

    def server_update(self, round, global_adapter, delta, updates):
        p = self.params
        openfedllm = p.variant == "openfedllm"
        eta = p.eta
        if p.bias_correction:
            t = self.t + 1
            eta = eta * math.sqrt(1 - p.beta2**t) / (1 - p.beta1**t)
        new = {}
        for key, x in global_adapter.items():
            d = delta[key].to(x.dtype)
            m = self.first_moment(key, d)
            v0 = self.v.get(key)
            if v0 is None:
                v0 = torch.full_like(d, p.tau**2 if openfedllm else 0.0)
            g2 = m * m if openfedllm else d * d
            v = self.second_moment(v0, g2)
            self.m[key], self.v[key] = m, v
            new[key] = x + eta * m / (v.sqrt() + p.tau)
        self.t += 1
        return new

    def server_state_dict(self):
        state = {f"m/{k}": v for k, v in self.m.items()}
        state.update({f"v/{k}": v for k, v in self.v.items()})
        state["t"] = torch.tensor(self.t)
        return state

    def load_server_state_dict(self, state):
        self.m = {k[2:]: v.clone() for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: v.clone() for k, v in state.items() if k.startswith("v/")}
        self.t = int(state["t"]) if "t" in state else 0
