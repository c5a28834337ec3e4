"""Half-precision deltas: fp16 (10-bit mantissa, range ±65504) or bf16 (7-bit mantissa, fp32's
range), round-to-nearest; 2 bytes per value instead of 4."""

from __future__ import annotations

import torch

from fedtune.compression.registry import CODECS, Codec


class HalfPrecision(Codec):
    dtype: torch.dtype

    def encode(self, delta, generator):
        return {k: t.to(self.dtype) for k, t in delta.items()}

    def decode(self, payload, like):
        return {k: payload[k].float() for k in like}


@CODECS.register("fp16")
class FP16(HalfPrecision):
    """fp16 delta, round-to-nearest (2 bytes per value)."""

    dtype = torch.float16


@CODECS.register("bf16")
class BF16(HalfPrecision):
    """bf16 delta, round-to-nearest (2 bytes per value, fp32's range)."""

    dtype = torch.bfloat16
