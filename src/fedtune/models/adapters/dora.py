"""DoRA (Liu et al., ICML 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation") through peft.

Each targeted weight is split into a magnitude vector m and a direction V + B·A (LoRA on the
direction): W' = m · (W + s·B·A) / ‖W + s·B·A‖_c. The adapter state is A, B and m per module;
federated strategies average all three tensor by tensor, as they average LoRA's A and B.
"""

from __future__ import annotations

from fedtune.models.adapters.lora import LoraParams, lora_config
from fedtune.models.adapters.registry import ADAPTERS


class DoraParams(LoraParams):
    """LoRA's parameters; the magnitude vector starts at the base weight's column norms."""


@ADAPTERS.register("dora", DoraParams)
def dora_config(params: DoraParams):
    """DoRA: LoRA on the direction of each targeted weight plus a trained magnitude."""
    config = lora_config(params)
    config.use_dora = True
    return config
