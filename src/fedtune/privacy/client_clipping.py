"""Client-side clipping for client-level DP (``privacy.client_level.side: client``): the client
clips its own delta to the norm the server sent, before the update leaves it, and reports
whether it fitted (the bit adaptive clipping counts). Needed when the server must not see single
updates (secure aggregation); the math is ``geometry.clip_to_norm``, the same the server applies."""

from __future__ import annotations

import torch

from fedtune.adapter_state import clone
from fedtune.algorithms.aggregation.delta import apply_delta, client_delta
from fedtune.algorithms.aggregation.geometry import clip_to_norm, norms
from fedtune.client.hooks import TrainingHook, register_hook
from fedtune.privacy.client_level import CLIP_NORM, UNCLIPPED


class ClientClipping(TrainingHook):
    def __init__(self, bound: float):
        self.bound = bound
        self.start: dict[str, torch.Tensor] = {}

    def on_round_start(self, params, instruction):
        self.start = clone(params)  # on the CPU, as update.adapter

    def on_round_end(self, params, update):
        delta = client_delta(update, self.start)
        norm = norms([delta])[0]
        update.adapter = apply_delta(self.start, clip_to_norm(delta, norm, self.bound))
        update.metrics[UNCLIPPED] = 1.0 if norm <= self.bound else 0.0
        update.metrics["dp_update_norm"] = norm


@register_hook
def _client_clipping(instruction, store):
    bound = instruction.config.get(CLIP_NORM)
    return ClientClipping(float(bound)) if bound is not None else None
