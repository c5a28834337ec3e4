"""The codec registry and the ``communication`` config section: how a client's update is
compressed on its way to the server (``communication.compress``).

A codec is one file in this package: a class registered with ``@CODECS.register(NAME, Params)``
whose ``encode(delta, generator)`` turns a client's delta y − x (float32 tensors by adapter key)
into the tensors that travel, and whose ``decode(payload, like)`` turns them back. The client
compresses its *delta*, never its weights (fedtune's server reduces deltas anyway), and the server
decodes before any check or reducer, so compression composes with every algorithm and reducer.
"""

from __future__ import annotations

import torch
from pydantic import field_validator

from fedtune.schema import Registry, Section

CODECS = Registry("codec")

Payload = dict[str, torch.Tensor]


class Codec:
    """Base of every codec. ``stateful`` codecs keep an error-feedback residual per client."""

    def __init__(self, params: Section):
        self.params = params

    @property
    def stateful(self) -> bool:
        return False

    def encode(self, delta: dict[str, torch.Tensor], generator: torch.Generator) -> Payload:
        raise NotImplementedError

    def decode(self, payload: Payload, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The delta, as float32 tensors shaped like ``like`` (the global adapter's)."""
        raise NotImplementedError


class CommunicationConfig(Section):
    # none | fp16 | bf16 | int8 | topk, with the codec's parameters, e.g. {name: topk, ratio: 0.01}
    compress: CODECS.choice(default="none") = "none"
    # the global adapter sent to each client: none | fp16 | bf16 | int8 (weights, not a delta: no top-k)
    download: CODECS.choice(default="none") = "none"

    @field_validator("download")
    @classmethod
    def _dense(cls, v):
        if v.name == "topk":
            raise ValueError("top-k sparsifies deltas; the download is the adapter itself (use fp16, bf16 or int8)")
        return v
