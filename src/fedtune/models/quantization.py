"""``model.quantization``: a 4- or 8-bit base model through bitsandbytes (QLoRA), checked
before anything loads so that a machine where it cannot run says why in one line.

bitsandbytes' k-bit kernels need a CUDA GPU and the optional ``gpu`` extra
(``pip install 'fedtune[gpu]'``); the quantized base is then prepared for adapter training
with peft's ``prepare_model_for_kbit_training`` (norms in fp32, input gradients on), as
OpenFedLLM does.
"""

from __future__ import annotations

import importlib.util

import torch

from fedtune.models.config import QuantizationConfig
from fedtune.schema import ConfigError


def check_quantization(q: QuantizationConfig, device: torch.device, name: str, gguf_file: str | None) -> None:
    """Raise a one-line ConfigError when ``q`` cannot load ``name`` on ``device`` here."""
    if device.type != "cuda":
        raise ConfigError(f"model.quantization: bitsandbytes' {q.bits}-bit weights need a CUDA device, but "
                          f"model.device resolves to {device.type} here; drop model.quantization or run on a GPU host")
    if name in ("tiny-random", "smollm2-135m-instruct") or name.endswith(".gguf") or gguf_file:
        raise ConfigError(f"model.quantization: {name} is not a Hugging Face checkpoint (a GGUF file or a "
                          "built-in model); name a Hugging Face id or directory")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("model.quantization: bitsandbytes is not installed; pip install 'fedtune[gpu]'")


def bnb_config(q: QuantizationConfig):
    """transformers' BitsAndBytesConfig for ``q``."""
    from transformers import BitsAndBytesConfig

    compute = getattr(torch, q.compute_dtype)
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.type or "nf4",
                              bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute)


def prepare_for_training(model):
    """peft's k-bit preparation; gradient checkpointing is left to ``train.gradient_checkpointing``."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
