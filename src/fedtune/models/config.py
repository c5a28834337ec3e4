"""The ``model`` config section: which base model, where it runs, whether its weights are
quantized, and which adapter method trains on it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fedtune.models.adapters import ADAPTERS
from fedtune.schema import Section


class QuantizationConfig(Section):
    """A k-bit base model through bitsandbytes (QLoRA; OpenFedLLM's ``load_in_4bit``/``load_in_8bit``).
    The base weights are frozen in 4 or 8 bits, the adapter trains in ``compute_dtype``. The
    defaults follow the QLoRA paper's NF4 (OpenFedLLM leaves bitsandbytes' own defaults)."""

    bits: Literal[4, 8]
    type: Literal["nf4", "fp4"] | None = None  # 4-bit only; None = nf4
    double_quant: bool = False  # quantize the quantization constants too (4-bit only; saves ~0.4 bit/weight)
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # matmuls run in this dtype

    @model_validator(mode="after")
    def _four_bit_only(self):
        if self.bits != 4 and (self.type is not None or self.double_quant):
            raise ValueError("type and double_quant apply to 4-bit quantization only (bits: 4)")
        return self


class ModelConfig(Section):
    # A built-in alias (smollm2-135m-instruct, tiny-random), a Hugging Face id, a local
    # directory, or a path to a .gguf file.
    name: str = "smollm2-135m-instruct"
    gguf_file: str | None = None  # file name inside `name` when `name` is a directory or HF id
    revision: str | None = None
    # auto | cpu | cuda | cuda:N | mps; auto = the first GPU when one is visible, else the CPU
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    # {bits: 4 | 8, type: nf4 | fp4, double_quant, compute_dtype}; null = full-precision weights. Needs CUDA
    # and the `gpu` extra (bitsandbytes).
    quantization: QuantizationConfig | None = None
    # The PEFT method and its parameters, e.g. {method: lora, r: 16, alpha: 32}.
    adapter: ADAPTERS.choice(default="lora") = "lora"
