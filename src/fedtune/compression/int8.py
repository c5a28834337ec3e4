"""8-bit quantization with stochastic rounding (QSGD-style, Alistarh et al., NeurIPS 2017, with
s = 255 levels and a per-tensor scale): each value x becomes q = floor(x/s + u), u ~ U[0, 1),
s = max|x| / 127, so E[q·s] = x (unbiased) and |q·s − x| < s. 1 byte per value plus one float32
scale per tensor."""

from __future__ import annotations

import torch

from fedtune.compression.registry import CODECS, Codec

SCALE = "/scale"


@CODECS.register("int8")
class Int8(Codec):
    """int8 delta with stochastic rounding and a per-tensor scale (1 byte per value)."""

    def encode(self, delta, generator):
        out = {}
        for k in sorted(delta):
            t = delta[k]
            scale = t.abs().max().clamp(min=1e-30) / 127
            u = torch.rand(t.shape, generator=generator)
            out[k] = torch.floor(t / scale + u).clamp(-127, 127).to(torch.int8)
            out[k + SCALE] = scale.reshape(1).float()
        return out

    def decode(self, payload, like):
        return {k: payload[k].float() * payload[k + SCALE] for k in like}
