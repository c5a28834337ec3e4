"""The ``model`` config section: which base model, and which adapter method trains on it."""

from __future__ import annotations

from fedtune.models.adapters import ADAPTERS
from fedtune.schema import Section


class ModelConfig(Section):
    # A built-in alias (smollm2-135m-instruct, tiny-random), a Hugging Face id, a local
    # directory, or a path to a .gguf file.
    name: str = "smollm2-135m-instruct"
    gguf_file: str | None = None  # file name inside `name` when `name` is a directory or HF id
    revision: str | None = None
    # The PEFT method and its parameters, e.g. {method: lora, r: 16, alpha: 32}.
    adapter: ADAPTERS.choice(default="lora") = "lora"
