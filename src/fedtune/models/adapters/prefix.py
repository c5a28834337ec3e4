"""Prefix tuning (Li & Liang, ACL 2021, "Prefix-Tuning: Optimizing Continuous Prompts for
Generation") through peft, with FS-LLM's README defaults (20 virtual tokens, no projection).

Learned key/value vectors for ``num_virtual_tokens`` positions are prepended to every attention
layer's cache; the model itself is untouched. Without ``projection`` the adapter state is that
table directly; with it, a two-layer MLP computes the table from a smaller embedding (fedtune then
moves the embedding and the MLP, not the table peft saves in ``adapter/``).
"""

from __future__ import annotations

from pydantic import Field

from fedtune.models.adapters.registry import ADAPTERS
from fedtune.schema import Section


class PrefixParams(Section):
    num_virtual_tokens: int = Field(20, ge=1)
    projection: bool = False  # peft's prefix_projection: reparameterize through an MLP
    encoder_hidden_size: int | None = Field(None, ge=1)  # the MLP's width (null: the model's hidden size)


@ADAPTERS.register("prefix", PrefixParams)
def prefix_config(params: PrefixParams):
    """Prefix tuning: trained key/value prefixes in every attention layer."""
    from peft import PrefixTuningConfig

    extra = {"encoder_hidden_size": params.encoder_hidden_size} if params.encoder_hidden_size else {}
    return PrefixTuningConfig(num_virtual_tokens=params.num_virtual_tokens, prefix_projection=params.projection,
                              task_type="CAUSAL_LM", **extra)
