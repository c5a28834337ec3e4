"""IA³ (Liu et al., NeurIPS 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper
than In-Context Learning") through peft.

Learned vectors rescale the keys, values and the feed-forward's inner activations (l_k, l_v,
l_ff, initialized to 1): the smallest trainable state of the adapter methods (one vector per
targeted module). Federated strategies average the vectors.
"""

from __future__ import annotations

from fedtune.models.adapters.registry import ADAPTERS
from fedtune.schema import Section


class IA3Params(Section):
    """null modules: peft's defaults for the architecture (Llama: k_proj, v_proj, down_proj)."""

    target_modules: list[str] | None = None
    # the targets that are feed-forward layers (their *input* is rescaled); null: peft's defaults
    feedforward_modules: list[str] | None = None


@ADAPTERS.register("ia3", IA3Params)
def ia3_config(params: IA3Params):
    """IA³: learned rescaling vectors on keys, values and feed-forward activations."""
    from peft import IA3Config

    return IA3Config(target_modules=params.target_modules, feedforward_modules=params.feedforward_modules,
                     task_type="CAUSAL_LM")
