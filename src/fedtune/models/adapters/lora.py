"""LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through peft.

The adapter state is the A and B matrices of every targeted module; federated strategies average
A and B separately (as OpenFedLLM and FS-LLM do), which is not the average of the products B·A —
see docs/algorithms.md.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.models.adapters.registry import ADAPTERS
from fedtune.schema import Section


class LoraParams(Section):
    """Low-rank update W + (alpha/r)·B·A on the targeted linear layers (B starts at 0)."""

    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # "all-linear" or an explicit list such as [q_proj, v_proj].
    target_modules: str | list[str] = "all-linear"


@ADAPTERS.register("lora", LoraParams)
def lora_config(params: LoraParams):
    """LoRA: low-rank A·B matrices beside each targeted linear layer."""
    from peft import LoraConfig

    return LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                      target_modules=params.target_modules, bias="none", task_type="CAUSAL_LM")
