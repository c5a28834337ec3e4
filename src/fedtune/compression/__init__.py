"""Compressed client updates (``communication.compress``): one codec per file, found by
``CODECS`` (``fedtune ls codecs``); importing the package registers them and the client hook."""

from fedtune.compression import half, int8, none, topk, transport  # noqa: F401  (each registers itself)
from fedtune.compression.registry import CODECS, CommunicationConfig

__all__ = ["CODECS", "CommunicationConfig"]
