"""Move a peft adapter's state in and out of the model as tensors (any adapter method).

The state is peft's own state dict (``get_peft_model_state_dict``), keys without the adapter
name: what clients send, the server aggregates and checkpoints hold. Getting it gives CPU
tensors, setting it copies them onto the model's device, so states move between machines
with and without a GPU.
"""

from __future__ import annotations

import torch

from fedtune.adapter_state import AdapterState, clone


def soft_prompt(model) -> bool:
    """Whether the adapter is a soft prompt (prompt tuning, P-tuning): peft's state dict then
    holds the prompt *computed* from its encoder, so fedtune moves the encoder's parameters."""
    return getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False)


def _prompt_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {f"prompt_encoder.{n}": p for n, p in model.prompt_encoder[model.active_adapter].named_parameters()}


def get_adapter(model) -> AdapterState:
    """The adapter tensors (peft key names, without the adapter name), detached CPU copies."""
    from peft import get_peft_model_state_dict

    return clone(_prompt_parameters(model) if soft_prompt(model) else get_peft_model_state_dict(model))


def set_adapter(model, state: AdapterState) -> None:
    """Copy adapter tensors (on any device) into the model in place, on its device; every key must match."""
    from peft import set_peft_model_state_dict

    if soft_prompt(model):
        params = _prompt_parameters(model)
        if state.keys() != params.keys():
            raise KeyError(f"adapter keys not in the model: {sorted(state.keys() ^ params.keys())[:3]}")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(state[k])
        return
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise KeyError(f"adapter keys not in the model: {unexpected[:3]}")


def adapter_parameters(model) -> dict[str, torch.nn.Parameter]:
    """Adapter-state key -> live trainable Parameter (the mapping hooks and optimizers use).
    Matched by storage, not by name: peft renames some tensors in its state dict (DoRA's
    ``lora_magnitude_vector.default.weight`` is ``lora_magnitude_vector`` there)."""
    from peft import get_peft_model_state_dict

    if soft_prompt(model):
        return {k: p for k, p in _prompt_parameters(model).items() if p.requires_grad}
    key_of = {t.data_ptr(): k for k, t in get_peft_model_state_dict(model).items()}
    params = {}
    for p in model.parameters():
        if p.requires_grad and (key := key_of.get(p.data_ptr())) is not None:
            params[key] = p
    missing = set(key_of.values()) - params.keys()
    if missing:
        raise KeyError(f"adapter keys without a trainable parameter: {sorted(missing)[:3]}")
    return params
