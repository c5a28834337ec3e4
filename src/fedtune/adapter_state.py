"""Adapter state: an ordered mapping of LoRA tensor names to tensors, and the arithmetic FL needs.

Everything that crosses the client/server boundary or lands on disk is an ``AdapterState``
(safetensors on disk, Flower ArrayRecords on the wire) — never a pickle — and its tensors are on
the CPU, whatever device the model trains on: a checkpoint written on a GPU resumes on a CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch
from safetensors.torch import load_file, save_file

from fedtune.atomic_write import atomic_path

AdapterState = dict[str, torch.Tensor]


def clone(state: Mapping[str, torch.Tensor]) -> AdapterState:
    """Detached dtype-preserving CPU copy, so later in-place training never aliases global state
    and no state holds a device (the model's tensors may live on a GPU)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def zeros_like(state: Mapping[str, torch.Tensor]) -> AdapterState:
    return {k: torch.zeros_like(v) for k, v in state.items()}


def subtract(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> AdapterState:
    """a - b, key by key."""
    return {k: a[k] - b[k] for k in a}


def add(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float = 1.0) -> AdapterState:
    """a + alpha * b, key by key."""
    return {k: a[k] + alpha * b[k] for k in a}


def weighted_sum(states: Iterable[Mapping[str, torch.Tensor]], weights: Iterable[float]) -> AdapterState:
    """sum_i w_i * state_i, accumulated in float64 for order-insensitive precision, returned in each key's dtype."""
    states, weights = list(states), list(weights)
    if not states:
        raise ValueError("weighted_sum needs at least one state")
    out = {}
    for key, ref in states[0].items():
        acc = torch.zeros_like(ref, dtype=torch.float64)
        for state, w in zip(states, weights):
            acc += float(w) * state[key].to(torch.float64)
        out[key] = acc.to(ref.dtype)
    return out


def num_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def save(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write safetensors atomically: a reader never sees a half-written file."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp))


def load(path: str | os.PathLike) -> AdapterState:
    return dict(load_file(str(path)))
