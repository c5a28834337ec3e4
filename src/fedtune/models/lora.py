"""Attach LoRA with peft and move the adapter state in and out of the model as tensors."""

from __future__ import annotations

import torch

from fedtune.adapter_state import AdapterState
from fedtune.config import LoraConfig


def attach_lora(model: torch.nn.Module, cfg: LoraConfig, seed: int = 0):
    """Wrap ``model`` in a peft LoRA model. The initial A matrices come from ``seed`` so every
    party (and every engine) starts from the same global adapter."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_peft_model(model, peft_cfg)


def get_adapter(model) -> AdapterState:
    """The LoRA tensors (peft key names, without the adapter name), detached copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def set_adapter(model, state: AdapterState) -> None:
    """Load LoRA tensors into the model in place; every key must match."""
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
