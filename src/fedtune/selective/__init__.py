"""Selective layer fine-tuning (Sun et al., ISIT 2025): each client trains and sends the adapter
tensors of a few transformer layers, chosen by the server from the clients' layer importance
(``selective`` section, docs/selective.md)."""

from fedtune.selective.config import SelectiveConfig

__all__ = ["SelectiveConfig"]
