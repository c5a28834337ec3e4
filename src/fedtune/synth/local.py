"""The ``local`` generation backend: a Hugging Face causal LM in this process.

The run's own model (with the adapter being evaluated or defended, or with the adapter switched
off) or another model loaded once by name; prompts sorted by length and left-padded into batches,
``generate`` with its KV cache on the model's device, in half precision where the device does it
well (``precision``).
"""

from __future__ import annotations

import contextlib

import torch
from pydantic import Field

from fedtune.data.tokenize import tokenize_prompts
from fedtune.models.device import model_device, resolve_device
from fedtune.models.fingerprint import tensors_digest, weights_fingerprint
from fedtune.precision import precision_for
from fedtune.schema import AutoSwitch
from fedtune.synth.generation import GENERATORS, GenerationParams, TextGenerator


class LocalParams(GenerationParams):
    model: str | None = None  # None = the run's own model; else a model name or path, loaded once
    # a peft adapter directory (e.g. another run's adapter/) put on ``model``: a fine-tuned model
    # without merging it first (KnowledgeSG's professional, a judge)
    adapter: str | None = None
    device: str = "auto"  # where a model loaded by name runs (the run's own model stays where it is)
    batch_size: int = Field(16, ge=1)
    bf16: AutoSwitch = "auto"  # half-precision autocast; auto = as train.bf16 (the device's choice)


def with_adapter(model, directory: str):
    """``model`` with the peft adapter saved in ``directory`` (one-line error when it is not one)."""
    from pathlib import Path

    from peft import PeftModel

    if not (Path(directory) / "adapter_config.json").is_file():
        raise ValueError(f"generation.adapter: {directory} holds no peft adapter (adapter_config.json)")
    return PeftModel.from_pretrained(model, directory)


@GENERATORS.register("local", LocalParams)
class LocalGenerator(TextGenerator):
    """Batched generation with a local transformers model (left-padded prompts, KV cache)."""

    def __init__(self, params: LocalParams, model=None, tokenizer=None):
        super().__init__(params)
        if params.model is not None:
            from fedtune.models.loader import load_model

            loaded = load_model(params.model)
            model, tokenizer = loaded.model.to(resolve_device(params.device, "generation.device")), loaded.tokenizer
            if params.adapter is not None:
                model = with_adapter(model, params.adapter)
        elif params.adapter is not None:
            raise ValueError("generation.adapter: name the model it belongs to (generation.model)")
        if model is None:
            raise ValueError("generation: the local backend needs a model (generation.model or the run's own)")
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.precision = precision_for(params.bf16, model_device(model))
        self._base_identity = None

    def identity(self, use_adapter: bool) -> object:
        """The base weights' fingerprint, and the adapter's exact digest when it is on."""
        if self._base_identity is None:
            base = self.model.get_base_model() if hasattr(self.model, "peft_config") else self.model
            self._base_identity = [self.params.model, weights_fingerprint(base), str(self.precision.dtype),
                                   self.tokenizer.chat_template]
        if use_adapter and hasattr(self.model, "peft_config"):
            from fedtune.models.adapters.state import get_adapter

            return [*self._base_identity, tensors_digest(get_adapter(self.model))]
        return self._base_identity

    @torch.no_grad()
    def _generate(self, conversations, use_adapter, seed, done):
        p = self.params
        prompts = tokenize_prompts([{"prompt": c} for c in conversations], self.tokenizer)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch together
        switched_off = self.model.disable_adapter() if not use_adapter and hasattr(self.model, "peft_config") \
            else contextlib.nullcontext()
        sampling = {"do_sample": True, "temperature": p.temperature, "top_p": p.top_p} if p.temperature \
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        self.model.eval()
        device = model_device(self.model)
        with switched_off, torch.random.fork_rng(), self.precision.autocast():
            torch.manual_seed(seed)
            for start in range(0, len(order), p.batch_size):
                idx = order[start : start + p.batch_size]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.tensor([[self.pad_id] * (width - len(prompts[i])) + prompts[i] for i in idx], device=device)
                mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx],
                                    device=device)
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=p.max_new_tokens,
                                          pad_token_id=self.pad_id, **sampling)
                done(idx, [self.tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
                           for row in range(len(idx))])
