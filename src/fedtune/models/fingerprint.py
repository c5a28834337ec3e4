"""Cheap identities of model weights, for keys of what is cached from a model's outputs."""

from __future__ import annotations

import hashlib

import torch


def weights_fingerprint(model: torch.nn.Module, samples: int = 8) -> list:
    """What tells two models of one name apart cheaply: their config and the sums of ``samples``
    of their tensors (a different seed or checkpoint changes them)."""
    params = list(model.parameters())
    config = getattr(model, "config", None)
    return [config.to_json_string(use_diff=False) if config is not None else type(model).__name__,
            [round(float(p.detach().double().sum()), 6) for p in params[:: max(1, len(params) // samples)]]]


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """An exact digest (SHA-256) of named tensors, e.g. an adapter's state."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
