"""SCAFFOLD client hook (Karimireddy et al., 2020).

After every optimizer step: theta <- theta - lr * (c - c_i) (the drift correction; with an Adam
local optimizer it is applied after the step, as OpenFedLLM does, since the paper's rule is for SGD).
At round end the client control variate is updated:
  option II: c_i+ = c_i - c + (x - y_i) / (K * lr)     (K local steps, x the round's start adapter)
  option I:  c_i+ = gradient of the local loss at x    (computed on the round's first step of data)
and dc_i = c_i+ - c_i is sent to the server. c_i is kept in the ClientStateStore (one file per
client on disk), so memory does not grow with the number of clients.
"""

from __future__ import annotations

import torch

from fedtune import adapter_state as ops
from fedtune.client.hooks import TrainingHook, register_hook
from fedtune.server.scaffold import CONTROL_DELTA, SERVER_CONTROL

CLIENT_CONTROL = "scaffold_control"


class ScaffoldHook(TrainingHook):
    def __init__(self, instruction, store):
        self.instruction, self.store = instruction, store
        self.option = int(instruction.config.get("scaffold_option", 2))
        self.wants_initial_gradient = self.option == 1
        self.initial_gradient: dict[str, torch.Tensor] | None = None

    def on_round_start(self, params, instruction):
        self.server_control = instruction.tensors[SERVER_CONTROL]
        saved = self.store.get(instruction.client_id, CLIENT_CONTROL)
        self.client_control = saved if saved is not None else ops.zeros_like(self.server_control)
        self.correction = ops.subtract(self.server_control, self.client_control)
        self.start = {k: p.detach().clone() for k, p in params.items()}

    def on_initial_gradient(self, grads: dict[str, torch.Tensor]) -> None:
        self.initial_gradient = grads

    @torch.no_grad()
    def after_optimizer_step(self, params, lr):
        for key, p in params.items():
            p.sub_(lr * self.correction[key])

    def on_round_end(self, params, update):
        ins = self.instruction
        if self.option == 1:
            new_control = self.initial_gradient
        else:
            scale = 1.0 / (ins.steps * ins.lr)
            new_control = {k: self.client_control[k] - self.server_control[k]
                           + scale * (self.start[k] - update.adapter[k]) for k in self.start}
        self.store.put(ins.client_id, CLIENT_CONTROL, new_control)
        update.tensors[CONTROL_DELTA] = ops.subtract(new_control, self.client_control)


@register_hook
def scaffold_hook(instruction, store):
    return ScaffoldHook(instruction, store) if SERVER_CONTROL in instruction.tensors else None
