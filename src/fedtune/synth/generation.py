"""The text-generation interface: conversations in, answers out, from a backend chosen by name.

Everything in fedtune that generates text (safety evaluation, the post-hoc defense's data, LLM
judges, data synthesis) calls ``TextGenerator.generate(conversations)``. The ``local`` backend
runs a Hugging Face causal LM in this process: the run's own model (with the adapter being
evaluated or defended, or with the adapter switched off) or another model loaded once by name.
Backends register in ``GENERATORS`` (``generation: {backend: local, ...}``), so a remote
endpoint is one more file. Each generator counts the seconds it spent generating.
"""

from __future__ import annotations

import contextlib
import time

import torch
from pydantic import Field

from fedtune.data.tokenize import tokenize_prompts
from fedtune.schema import Registry, Section

GENERATORS = Registry("generator", tag="backend")

Conversation = list[dict]  # [{"role": "system" | "user" | "assistant", "content": str}, ...]


class TextGenerator:
    """Base of every backend. ``seconds`` is the time spent in ``generate`` so far."""

    def __init__(self, params: Section):
        self.params = params
        self.seconds = 0.0

    def generate(self, conversations: list[Conversation], use_adapter: bool = True, seed: int = 0) -> list[str]:
        """One answer per conversation, in order. ``use_adapter`` False generates with the run
        model's adapter switched off (the base model); ``seed`` fixes sampling when it samples."""
        started = time.perf_counter()
        try:
            return self._generate(conversations, use_adapter, seed)
        finally:
            self.seconds += time.perf_counter() - started

    def _generate(self, conversations, use_adapter, seed) -> list[str]:
        raise NotImplementedError


class LocalParams(Section):
    model: str | None = None  # None = the run's own model; else a model name or path, loaded once
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(16, ge=1)
    temperature: float = Field(0.0, ge=0)  # 0 = greedy decoding (deterministic)
    top_p: float = Field(1.0, gt=0, le=1)


@GENERATORS.register("local", LocalParams)
class LocalGenerator(TextGenerator):
    """Batched generation with a local transformers model (left-padded prompts, KV cache)."""

    def __init__(self, params: LocalParams, model=None, tokenizer=None):
        super().__init__(params)
        if params.model is not None:
            from fedtune.models.loader import load_model

            loaded = load_model(params.model)
            model, tokenizer = loaded.model, loaded.tokenizer
        if model is None:
            raise ValueError("generation: the local backend needs a model (generation.model or the run's own)")
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @torch.no_grad()
    def _generate(self, conversations, use_adapter, seed):
        p = self.params
        prompts = tokenize_prompts([{"prompt": c} for c in conversations], self.tokenizer)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch together
        answers = [""] * len(prompts)
        switched_off = self.model.disable_adapter() if not use_adapter and hasattr(self.model, "peft_config") \
            else contextlib.nullcontext()
        sampling = {"do_sample": True, "temperature": p.temperature, "top_p": p.top_p} if p.temperature \
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        self.model.eval()
        with switched_off, torch.random.fork_rng():
            torch.manual_seed(seed)
            for start in range(0, len(order), p.batch_size):
                idx = order[start : start + p.batch_size]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.tensor([[self.pad_id] * (width - len(prompts[i])) + prompts[i] for i in idx])
                mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx])
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=p.max_new_tokens,
                                          pad_token_id=self.pad_id, **sampling)
                for row, i in enumerate(idx):
                    answers[i] = self.tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        return answers


def build_generator(params: Section, model=None, tokenizer=None) -> TextGenerator:
    """The configured backend; ``model``/``tokenizer`` are the run's own (used when the backend
    does not name a model of its own)."""
    return GENERATORS[params.backend].target(params, model=model, tokenizer=tokenizer)
