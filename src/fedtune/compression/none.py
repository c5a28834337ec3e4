"""No compression: the float32 delta travels as it is."""

from __future__ import annotations

from fedtune.compression.registry import CODECS, Codec


@CODECS.register("none")
class NoCompression(Codec):
    """The float32 delta as it is (4 bytes per value)."""

    def encode(self, delta, generator):
        return dict(delta)

    def decode(self, payload, like):
        return {k: payload[k] for k in like}
