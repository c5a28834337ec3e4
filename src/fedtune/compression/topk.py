"""Top-k sparsification with error feedback (Stich, Cordonnier & Jaggi, NeurIPS 2018; Karimireddy
et al., ICML 2019): each tensor sends only its ``ratio`` largest-magnitude entries (indices as
int32, values as float32); with ``error_feedback`` the client adds what it did not send to its
next round's delta (the residual is per-client state on disk), so over the rounds every
coordinate's sum is transmitted. k is per tensor (at least 1), not over the whole adapter, so
that every LoRA matrix keeps a share (an adapter-wide top-k is not implemented)."""

from __future__ import annotations

import math

import torch
from pydantic import Field

from fedtune.compression.registry import CODECS, Codec
from fedtune.schema import Section

INDEX = "/index"


class TopKParams(Section):
    ratio: float = Field(0.01, gt=0, le=1)  # share of each tensor's entries sent
    error_feedback: bool = True  # carry the unsent rest to the next round


@CODECS.register("topk", TopKParams)
class TopK(Codec):
    """The largest-magnitude share of each tensor (8 bytes per sent value), with error feedback."""

    @property
    def stateful(self) -> bool:
        return self.params.error_feedback

    def encode(self, delta, generator):
        out = {}
        for k in sorted(delta):
            flat = delta[k].reshape(-1)
            keep = max(1, math.ceil(self.params.ratio * flat.numel()))
            idx = flat.abs().topk(keep, sorted=False).indices.sort().values
            out[k] = flat[idx].float()
            out[k + INDEX] = idx.to(torch.int32)
        return out

    def decode(self, payload, like):
        delta = {}
        for k, ref in like.items():
            flat = torch.zeros(ref.numel(), dtype=torch.float32)
            flat[payload[k + INDEX].long()] = payload[k]
            delta[k] = flat.reshape(ref.shape)
        return delta
