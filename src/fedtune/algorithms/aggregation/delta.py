"""Client deltas and their weights: what every reducer works on.

A delta is y_i - x per adapter tensor, in float64: the difference of two fp32 values is exact
there, so the reduced update does not depend on the order clients arrive in, and x + mean(y - x)
rounds to the same fp32 adapter as mean(y) (OpenFedLLM's FedAvg). LoRA's A and B matrices are
separate tensors, so every reducer treats them separately (not the product B·A).
"""

from __future__ import annotations

import torch

from fedtune.adapter_state import AdapterState
from fedtune.protocol import ClientUpdate

Delta = dict[str, torch.Tensor]  # float64, same keys as the adapter


def client_deltas(updates: list[ClientUpdate], global_adapter: AdapterState) -> list[Delta]:
    """y_i - x for every update, the global adapter widened to float64 once for all of them.
    Keys come in sorted order whatever the adapter's own order (a checkpoint read back lists them
    differently from the live model), so randomness drawn key by key over a delta — DP noise, the
    Gaussian and Fang attacks — is the same after ``--resume``."""
    base = {k: global_adapter[k].double() for k in sorted(global_adapter)}
    return [{k: update.adapter[k].double().sub_(x) for k, x in base.items()} for update in updates]


def client_delta(update: ClientUpdate, global_adapter: AdapterState) -> Delta:
    return client_deltas([update], global_adapter)[0]


def apply_delta(global_adapter: AdapterState, delta: Delta, scale: float = 1.0) -> AdapterState:
    """x + scale * delta, computed in float64 and returned in each tensor's own dtype."""
    return {k: (x.double() + scale * delta[k]).to(x.dtype) for k, x in global_adapter.items()}


def client_weights(updates: list[ClientUpdate], weighting: str) -> list[float]:
    """Normalized weights: by local example count (FedAvg) or uniform."""
    if weighting == "uniform":
        return [1.0 / len(updates)] * len(updates)
    total = sum(u.num_examples for u in updates)
    if total <= 0:
        raise ValueError("cannot weight by examples: the updates report no examples")
    return [u.num_examples / total for u in updates]
