"""Move a peft adapter's state in and out of the model as tensors (any adapter method).

The state is peft's own state dict (``get_peft_model_state_dict``), keys without the adapter
name: what clients send, the server aggregates and checkpoints hold.
"""

from __future__ import annotations

import torch

from fedtune.adapter_state import AdapterState


def get_adapter(model) -> AdapterState:
    """The adapter tensors (peft key names, without the adapter name), detached copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def set_adapter(model, state: AdapterState) -> None:
    """Load adapter tensors into the model in place; every key must match."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise KeyError(f"adapter keys not in the model: {unexpected[:3]}")


def adapter_parameters(model) -> dict[str, torch.nn.Parameter]:
    """Adapter-state key -> live trainable Parameter (the mapping hooks and optimizers use)."""
    keys = set(get_adapter_keys(model))
    params = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = _state_key(name)
        if key in keys:
            params[key] = p
    missing = keys - params.keys()
    if missing:
        raise KeyError(f"adapter keys without a trainable parameter: {sorted(missing)[:3]}")
    return params


def get_adapter_keys(model) -> list[str]:
    from peft import get_peft_model_state_dict

    return list(get_peft_model_state_dict(model).keys())


def _state_key(param_name: str) -> str:
    """peft parameter name -> state-dict key: drop the adapter name ('.default')."""
    return param_name.replace(".default.", ".").replace(".default", "")
