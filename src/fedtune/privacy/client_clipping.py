"""Client-side clipping for client-level DP (``privacy.client_level.side: client``): the client
clips its own delta to the norm the server sent, before the update leaves it, and reports
whether it fitted (the bit adaptive clipping counts). Needed when the server must not see single
updates (secure aggregation); the math is ``client_level.clip``, the same the server applies."""

from __future__ import annotations

import torch

from fedtune.algorithms.aggregation.geometry import norms
from fedtune.client.hooks import TrainingHook, register_hook
from fedtune.privacy.client_level import CLIP_NORM, UNCLIPPED, clip


class ClientClipping(TrainingHook):
    def __init__(self, bound: float):
        self.bound = bound
        self.start: dict[str, torch.Tensor] = {}

    def on_round_start(self, params, instruction):
        self.start = {k: p.detach().clone() for k, p in params.items()}

    def on_round_end(self, params, update):
        delta = {k: update.adapter[k].double() - x.double() for k, x in self.start.items()}
        norm = norms([delta])[0]
        clipped = clip(delta, norm, self.bound)
        for k, x in self.start.items():
            update.adapter[k] = (x.double() + clipped[k]).to(x.dtype)
        update.metrics[UNCLIPPED] = 1.0 if norm <= self.bound else 0.0
        update.metrics["dp_update_norm"] = norm


@register_hook
def _client_clipping(instruction, store):
    bound = instruction.config.get(CLIP_NORM)
    return ClientClipping(float(bound)) if bound is not None else None
