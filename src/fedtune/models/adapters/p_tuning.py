"""P-tuning (Liu et al., 2021, "GPT Understands, Too") through peft's prompt encoder, with FS-LLM's
README defaults (20 virtual tokens, MLP reparameterization, encoder dropout 0.1).

The soft prompt is produced by a small encoder (an MLP or LSTM over a learned embedding) rather
than learned directly. fedtune moves and averages the encoder's own parameters — the embedding and
the MLP — not the prompt it computes (which is what peft's state dict, and so ``adapter/``, holds:
that saved prompt loads for inference with ``PeftModel.from_pretrained``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedtune.models.adapters.registry import ADAPTERS
from fedtune.schema import Section


class PTuningParams(Section):
    num_virtual_tokens: int = Field(20, ge=1)
    encoder: Literal["MLP", "LSTM"] = "MLP"  # peft's encoder_reparameterization_type
    encoder_hidden_size: int | None = Field(None, ge=1)  # null: the model's hidden size
    encoder_dropout: float = Field(0.1, ge=0, lt=1)


@ADAPTERS.register("p-tuning", PTuningParams)
def p_tuning_config(params: PTuningParams):
    """P-tuning: a soft prompt computed by a trained MLP/LSTM encoder."""
    from peft import PromptEncoderConfig

    extra = {"encoder_hidden_size": params.encoder_hidden_size} if params.encoder_hidden_size else {}
    return PromptEncoderConfig(num_virtual_tokens=params.num_virtual_tokens,
                               encoder_reparameterization_type=params.encoder,
                               encoder_dropout=params.encoder_dropout, task_type="CAUSAL_LM", **extra)
