"""Prompt tuning (Lester et al., EMNLP 2021, "The Power of Scale for Parameter-Efficient Prompt
Tuning") through peft, with FS-LLM's defaults (20 virtual tokens, random init).

A learned soft prompt — ``num_virtual_tokens`` embedding vectors — goes in front of every input;
the model itself is untouched. The adapter state is the prompt's embedding table; federated
strategies average it row by row (the virtual tokens have fixed positions, so rows correspond).
"""

from __future__ import annotations

from pydantic import Field

from fedtune.models.adapters.registry import ADAPTERS
from fedtune.schema import Section


class PromptParams(Section):
    num_virtual_tokens: int = Field(20, ge=1)


@ADAPTERS.register("prompt", PromptParams)
def prompt_config(params: PromptParams):
    """Prompt tuning: a trained soft prompt in front of every input."""
    from peft import PromptTuningConfig

    return PromptTuningConfig(num_virtual_tokens=params.num_virtual_tokens, task_type="CAUSAL_LM")
