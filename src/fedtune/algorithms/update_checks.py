"""Reject client updates the server must not aggregate: wrong keys, shapes or dtypes against the
global adapter, or non-finite values. The engine logs the reason and counts the rejection."""

from __future__ import annotations

import torch

from fedtune.adapter_state import AdapterState
from fedtune.protocol import ClientUpdate


def _check_state(name: str, state: AdapterState, reference: AdapterState) -> str | None:
    missing = reference.keys() - state.keys()
    if missing:
        return f"{name}: missing key {sorted(missing)[0]!r}"
    extra = state.keys() - reference.keys()
    if extra:
        return f"{name}: unexpected key {sorted(extra)[0]!r}"
    for key, ref in reference.items():
        t = state[key]
        if t.shape != ref.shape:
            return f"{name}: {key!r} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}"
        if t.dtype != ref.dtype:
            return f"{name}: {key!r} has dtype {t.dtype}, expected {ref.dtype}"
        if not torch.isfinite(t).all():
            return f"{name}: {key!r} has non-finite values"
    return None


def check_update(update: ClientUpdate, global_adapter: AdapterState) -> str | None:
    """A one-line reason to reject ``update``, or None when it is safe to aggregate."""
    if update.num_examples < 0:
        return f"negative num_examples {update.num_examples}"
    reason = _check_state("adapter", update.adapter, global_adapter)
    if reason:
        return reason
    for name, tensors in update.tensors.items():
        for key, t in tensors.items():
            if not torch.isfinite(t).all():
                return f"{name}: {key!r} has non-finite values"
    return None
