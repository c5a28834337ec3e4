"""The adapter-method registry: ``model.adapter: {method: NAME, ...}`` -> a peft config.

A method is one file in this package: a parameter model and a function that turns it into the
peft config to wrap the base model with, registered with ``@ADAPTERS.register(NAME, Params)``.
"""

from __future__ import annotations

import torch

from fedtune.schema import Registry, Section

ADAPTERS = Registry("adapter", tag="method")


def attach_adapter(model: torch.nn.Module, adapter: Section, seed: int = 0):
    """Wrap ``model`` in a peft model with the configured adapter. Initial weights come from
    ``seed``, so every party (and every engine) starts from the same global adapter."""
    from peft import get_peft_model

    peft_config = ADAPTERS[adapter.method].target(adapter)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_peft_model(model, peft_config)
