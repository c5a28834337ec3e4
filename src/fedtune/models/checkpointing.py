"""Activation (gradient) checkpointing: keep only each decoder layer's input in the forward pass
and recompute the rest during backward — less activation memory for about a third more compute.

Non-reentrant checkpointing (``use_reentrant=False``, what transformers recommends) propagates
gradients to the adapter's weights inside a checkpointed layer even though the frozen embeddings'
output needs no gradient, so peft's ``enable_input_require_grads`` workaround (needed by the
reentrant variant) is not used. transformers checkpoints only in training mode: evaluation and
generation are unaffected.
"""

from __future__ import annotations


def set_gradient_checkpointing(model, enabled: bool) -> None:
    """Turn checkpointing on or off for ``model`` (a peft-wrapped or plain transformers model);
    both ways, since a base model can be reused by runs with different settings."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(causal, "supports_gradient_checkpointing", False):
        if enabled:
            raise ValueError(f"train.gradient_checkpointing: {type(causal).__name__} does not support it")
        return
    if enabled == causal.is_gradient_checkpointing:
        return
    if enabled:
        causal.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        causal.gradient_checkpointing_disable()
