"""Adaptive server optimizers: FedAdagrad, FedYogi, FedAdam.

``variant: reddi`` — Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2:
    d = avg_i(y_i - x)                         (weighted by ``weighting``; the paper averages uniformly)
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

import torch

from fedtune.adapter_state import AdapterState
from fedtune.server.fedavg import weighted_delta
from fedtune.server.strategy import Strategy


class FedOpt(Strategy):
    """Shared state and update rule; subclasses define the second-moment update."""

    name = "fedopt"

    def __init__(self, weighting="examples", eta=1e-2, tau=1e-3, beta1=0.9, beta2=0.99, variant="reddi",
                 bias_correction=False):
        self.weighting = "uniform" if variant == "openfedllm" else weighting
        self.eta, self.tau, self.beta1, self.beta2 = eta, tau, beta1, beta2
        self.variant, self.bias_correction = variant, bias_correction
        self.m: AdapterState = {}
        self.v: AdapterState = {}
        self.t = 0  # aggregations so far

    def second_moment(self, v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def first_moment(self, key: str, d: torch.Tensor) -> torch.Tensor:
        if self.variant == "openfedllm" and self.t == 0:
            return d
        m = self.m.get(key, torch.zeros_like(d))
        return self.beta1 * m + (1 - self.beta1) * d

    def aggregate(self, round, global_adapter, updates):
        delta = weighted_delta(global_adapter, updates, self.weighting)
        eta = self.eta
        if self.bias_correction:
            t = self.t + 1
            eta = eta * math.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        new = {}
        for key, d in delta.items():
            m = self.first_moment(key, d)
            v0 = self.v.get(key)
            if v0 is None:
                v0 = torch.full_like(d, self.tau**2 if self.variant == "openfedllm" else 0.0)
            g2 = m * m if self.variant == "openfedllm" else d * d
            v = self.second_moment(v0, g2)
            self.m[key], self.v[key] = m, v
            new[key] = global_adapter[key] + eta * m / (v.sqrt() + self.tau)
        self.t += 1
        return new

    def state_dict(self):
        state = {f"m/{k}": v for k, v in self.m.items()}
        state.update({f"v/{k}": v for k, v in self.v.items()})
        state["t"] = torch.tensor(self.t)
        return state

    def load_state_dict(self, state):
        self.m = {k[2:]: v.clone() for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: v.clone() for k, v in state.items() if k.startswith("v/")}
        self.t = int(state["t"]) if "t" in state else 0


class FedAdagrad(FedOpt):
    name = "fedadagrad"

    def first_moment(self, key, d):
        return d  # no momentum in either variant

    def second_moment(self, v, g2):
        return v + g2


class FedYogi(FedOpt):
    name = "fedyogi"

    def second_moment(self, v, g2):
        return v - (1 - self.beta2) * g2 * torch.sign(v - g2)


class FedAdam(FedOpt):
    name = "fedadam"

    def second_moment(self, v, g2):
        return self.beta2 * v + (1 - self.beta2) * g2
