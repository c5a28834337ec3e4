"""The ``openai`` generation backend: any server speaking OpenAI's chat-completions API.

vLLM (``vllm serve``), llama.cpp's ``llama-server``, Hugging Face TGI and hosted providers all
serve ``POST {base_url}/chat/completions``; the ``openai`` client library (``pip install
fedtune[synth]``) does the HTTP, the retries of 408/409/429/5xx with backoff (honouring
Retry-After) and the timeouts. ``concurrency`` requests are in flight at once. The served model
is whatever the server runs: ``use_adapter`` does not apply to it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed

from pydantic import Field

from fedtune.synth.generation import GENERATORS, GenerationParams, TextGenerator


class GenerationError(RuntimeError):
    """A request failed after its retries; the message names the server, the prompt and why."""


class OpenAIParams(GenerationParams):
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:8080/v1 (llama.cpp)
    model: str  # the model name the server knows
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key; unset = no key
    concurrency: int = Field(4, ge=1)
    timeout: float = Field(60.0, gt=0)  # seconds per request
    retries: int = Field(3, ge=0)


@GENERATORS.register("openai", OpenAIParams)
class OpenAIGenerator(TextGenerator):
    """Chat completions from an OpenAI-compatible server, several requests at once."""

    label = "requesting completions"

    def __init__(self, params: OpenAIParams, model=None, tokenizer=None):
        super().__init__(params)
        try:
            from openai import OpenAI
        except ImportError:
            raise ImportError("generation.backend=openai needs the openai client: pip install 'fedtune[synth]'") from None
        self.client = OpenAI(base_url=params.base_url, api_key=os.environ.get(params.api_key_env) or "not-needed",
                             timeout=params.timeout, max_retries=params.retries)

    def identity(self, use_adapter: bool) -> object:
        return ["openai", self.params.base_url.rstrip("/"), self.params.model]

    def _one(self, conversation, seed: int) -> str:
        import openai

        p = self.params
        try:
            reply = self.client.chat.completions.create(
                model=p.model, messages=conversation, max_tokens=p.max_new_tokens, temperature=p.temperature,
                top_p=p.top_p, seed=seed)
        except openai.APIError as e:
            raise GenerationError(f"generation.base_url {p.base_url}: {type(e).__name__} after {p.retries} "
                                  f"retries: {str(e).splitlines()[0][:200]}") from None
        content = reply.choices[0].message.content if reply.choices else None
        if content is None:
            raise GenerationError(f"generation.base_url {p.base_url}: a reply without message content")
        return content.strip()

    def _generate(self, conversations, use_adapter, seed, done):
        with ThreadPoolExecutor(self.params.concurrency) as pool:
            futures = {pool.submit(self._one, c, seed): i for i, c in enumerate(conversations)}
            try:
                for future in as_completed(futures):
                    done([futures[future]], [future.result()])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
