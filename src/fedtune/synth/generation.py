"""The text-generation interface: conversations in, answers out, from a backend chosen by name.

Everything in fedtune that generates text (safety evaluation, the post-hoc defense's data, LLM
judges, data synthesis) calls ``TextGenerator.generate(conversations)``. Backends register in
``GENERATORS`` (``generation: {backend: local | openai, ...}``), one file each: ``local`` runs a
Hugging Face causal LM in this process (``synth/local.py``), ``openai`` calls any server that
speaks OpenAI's chat-completions API — vLLM, llama.cpp's server, TGI, hosted providers
(``synth/openai_compatible.py``). The interface adds what every backend needs: outputs cached by
content (``synth/cache.py``; a rerun or ``--resume`` regenerates nothing and a kill loses at most
one batch), a progress bar, and the seconds spent generating.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from pydantic import Field
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from fedtune.schema import Registry, Section
from fedtune.synth.cache import GenerationCache, content_key

GENERATORS = Registry("generator", tag="backend")

Conversation = list[dict]  # [{"role": "system" | "user" | "assistant", "content": str}, ...]
Done = Callable[[list[int], list[str]], None]  # a backend reports finished outputs by position


class GenerationParams(Section):
    """Sampling parameters every backend takes."""

    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.0, ge=0)  # 0 = greedy decoding (deterministic)
    top_p: float = Field(1.0, gt=0, le=1)
    cache: bool = True  # reuse outputs generated before for the same model, prompt and parameters

    def sampling(self) -> dict:
        """The parameters an output depends on (part of its cache key)."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p}


class TextGenerator:
    """Base of every backend. ``seconds`` is the time spent in ``generate`` so far; ``generated``
    and ``cached`` count the outputs made and reused."""

    label = "generating"

    def __init__(self, params: GenerationParams):
        self.params = params
        self.seconds = 0.0
        self.generated = self.cached = 0
        self._cache = GenerationCache() if params.cache else None

    def generate(self, conversations: list[Conversation], use_adapter: bool = True, seed: int = 0) -> list[str]:
        """One answer per conversation, in order. ``use_adapter`` False generates with the run
        model's adapter switched off (the base model); ``seed`` fixes sampling when it samples."""
        started = time.perf_counter()
        try:
            answers: list[str | None] = [None] * len(conversations)
            keys = [""] * len(conversations)
            if self._cache is not None:
                identity, sampling = self.identity(use_adapter), self.params.sampling()
                keys = [content_key(identity, c, sampling, seed) for c in conversations]
                found = self._cache.get_many(sorted(set(keys)))
                for i, k in enumerate(keys):
                    answers[i] = found.get(k)
            todo = [i for i, a in enumerate(answers) if a is None]
            self.cached += len(conversations) - len(todo)
            if todo:
                self._run(conversations, todo, answers, keys, use_adapter, seed)
            return answers  # type: ignore[return-value]
        finally:
            self.seconds += time.perf_counter() - started

    def _run(self, conversations, todo, answers, keys, use_adapter, seed) -> None:
        """Generate ``todo`` with a progress bar, caching each finished batch at once."""
        with Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(self.label, total=len(todo))

            def done(positions: list[int], texts: list[str]) -> None:
                for p, t in zip(positions, texts):
                    answers[todo[p]] = t
                if self._cache is not None:
                    self._cache.put_many({keys[todo[p]]: t for p, t in zip(positions, texts)})
                self.generated += len(positions)
                bar.advance(task, len(positions))

            self._generate([conversations[i] for i in todo], use_adapter, seed, done)

    def identity(self, use_adapter: bool) -> object:
        """What decides an output besides the conversation and the sampling parameters: the
        model (and the adapter in use), as a JSON-able value."""
        raise NotImplementedError

    def _generate(self, conversations: list[Conversation], use_adapter: bool, seed: int, done: Done) -> None:
        """Generate every conversation, calling ``done(positions, texts)`` as outputs finish."""
        raise NotImplementedError


def build_generator(params: Section, model=None, tokenizer=None) -> TextGenerator:
    """The configured backend; ``model``/``tokenizer`` are the run's own (used when the backend
    does not name a model of its own)."""
    return GENERATORS[params.backend].target(params, model=model, tokenizer=tokenizer)


from fedtune.synth import local, openai_compatible  # noqa: E402,F401  (register the backends)
