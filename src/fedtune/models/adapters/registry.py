"""The adapter-method registry: ``model.adapter: {method: NAME, ...}`` -> a peft config.

A method is one file in this package: a parameter model and a function that turns it into the
peft config to wrap the base model with, registered with ``@ADAPTERS.register(NAME, Params)``.
"""

from __future__ import annotations

import torch

from fedtune.schema import ConfigError, Registry, Section

ADAPTERS = Registry("adapter", tag="method")


def attach_adapter(model: torch.nn.Module, adapter: Section, seed: int = 0, layers: list[int] | None = None):
    """Wrap ``model`` in a peft model with the configured adapter. Initial weights come from
    ``seed``, so every party (and every engine) starts from the same global adapter. ``layers``
    restricts it to those decoder layers (offsite-tuning's adapter layers)."""
    from peft import get_peft_model

    peft_config = ADAPTERS[adapter.method].target(adapter)
    if layers is not None:
        if not hasattr(peft_config, "layers_to_transform"):
            raise ConfigError(f"model.adapter: {adapter.method} cannot be restricted to some layers "
                              "(offsite-tuning's adapter layers); use lora or dora")
        peft_config.layers_to_transform, peft_config.layers_pattern = list(layers), None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_peft_model(model, peft_config)
