"""SCAFFOLD (Karimireddy et al., 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning"): server strategy and client hook.

Server:
    x <- x + server_lr * reduce_i(y_i - x)         (the paper averages uniformly; ``aggregation.weighting``)
    c <- c + (1/N) * sum_{i in S} dc_i             (N = all clients, as in the paper and OpenFedLLM)
Client, after every optimizer step: theta <- theta - lr * (c - c_i) (the drift correction; with an
Adam local optimizer it is applied after the step, as OpenFedLLM does, since the paper's rule is
for SGD). At round end the client control variate is updated:
  option II: c_i+ = c_i - c + (x - y_i) / (K * lr)     (K local steps, x the round's start adapter)
  option I:  c_i+ = gradient of the local loss at x    (computed on the round's first step of data)
and dc_i = c_i+ - c_i is sent to the server. c_i stays with the client (one file per client in
its state store), so memory does not grow with the number of clients; the server holds one
adapter-sized c.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedtune import adapter_state as ops
from fedtune.algorithms.aggregating import AggregatingStrategy
from fedtune.algorithms.aggregation.delta import apply_delta
from fedtune.algorithms.registry import ALGORITHMS
from fedtune.client.hooks import TrainingHook, register_hook
from fedtune.schema import Section

SERVER_CONTROL = "server_control"  # instruction tensors: c
CONTROL_DELTA = "control_delta"  # update tensors: dc_i
CLIENT_CONTROL = "scaffold_control"  # client state store: c_i
OPTION = "scaffold_option"  # instruction config key


class ScaffoldParams(Section):
    server_lr: float = Field(1.0, gt=0)  # global step size
    option: Literal[1, 2] = 2  # control-variate update: I (gradient at x) or II (from the model delta)


@ALGORITHMS.register("scaffold", ScaffoldParams)
class Scaffold(AggregatingStrategy):
    """Control variates correct each client's drift towards its own optimum."""

    name = "scaffold"
    sends_client_tensors = True  # each client's control-variate delta

    def __init__(self, params, aggregation=None, num_clients: int = 1, seed: int = 0, privacy=None):
        super().__init__(params, aggregation, num_clients, seed, privacy)
        self.control: dict | None = None

    def configure_round(self, round, clients, lr, steps, global_adapter):
        if self.control is None:
            self.control = ops.zeros_like(global_adapter)
        instructions = super().configure_round(round, clients, lr, steps, global_adapter)
        for ins in instructions:
            ins.config[OPTION] = self.params.option
            ins.tensors[SERVER_CONTROL] = self.control
        return instructions

    def server_update(self, round, global_adapter, delta, updates):
        total = ops.weighted_sum([u.tensors[CONTROL_DELTA] for u in updates], [1.0] * len(updates))
        self.control = ops.add(self.control, total, 1.0 / self.num_clients)
        return apply_delta(global_adapter, delta, self.params.server_lr)

    def server_state_dict(self):
        return {f"control/{k}": v for k, v in (self.control or {}).items()}

    def load_server_state_dict(self, state):
        self.control = {k.split("/", 1)[1]: v.clone() for k, v in state.items()} or None


class ScaffoldHook(TrainingHook):
    def __init__(self, instruction, store):
        self.instruction, self.store = instruction, store
        self.option = int(instruction.config.get(OPTION, 2))
        self.wants_initial_gradient = self.option == 1
        self.initial_gradient: dict[str, torch.Tensor] | None = None

    def on_round_start(self, params, instruction):
        self.server_control = instruction.tensors[SERVER_CONTROL]
        saved = self.store.get(instruction.client_id, CLIENT_CONTROL)
        self.client_control = saved if saved is not None else ops.zeros_like(self.server_control)
        device = next(iter(params.values())).device  # the correction applies to the live parameters
        self.correction = {k: t.to(device) for k, t in ops.subtract(self.server_control, self.client_control).items()}
        self.start = ops.clone(params)  # on the CPU, as update.adapter

    def on_initial_gradient(self, grads: dict[str, torch.Tensor]) -> None:
        self.initial_gradient = grads

    @torch.no_grad()
    def after_optimizer_step(self, params, lr):
        for key, p in params.items():
            p.sub_(lr * self.correction[key])

    def on_round_end(self, params, update):
        ins = self.instruction
        # the trained keys' new control (all keys, unless selective layers froze some: theirs stay)
        if self.option == 1:
            trained = self.initial_gradient
        else:
            scale = 1.0 / (ins.steps * ins.lr)
            trained = {k: self.client_control[k] - self.server_control[k]
                       + scale * (self.start[k] - update.adapter[k]) for k in self.start}
        new_control = {**self.client_control, **trained}
        self.store.put(ins.client_id, CLIENT_CONTROL, new_control)
        update.tensors[CONTROL_DELTA] = ops.subtract(new_control, self.client_control)


@register_hook
def scaffold_hook(instruction, store):
    return ScaffoldHook(instruction, store) if SERVER_CONTROL in instruction.tensors else None
