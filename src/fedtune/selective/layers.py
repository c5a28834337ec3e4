"""Which transformer layer an adapter tensor belongs to, and the keys of a set of layers.

Adapter keys carry the block index of the module they adapt (``model.layers.3.self_attn.q_proj.
lora_A.weight`` in Llama, ``transformer.h.3.attn...`` in GPT-2). Tensors with no block index (an
adapted head or embedding) are the authors' "common layers": always trained, never selected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_BLOCK = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")


def layer_of(key: str) -> int | None:
    """The transformer block of an adapter key, None for a tensor outside the blocks."""
    match = _BLOCK.search(key)
    return int(match.group(1)) if match else None


def candidate_layers(keys: Iterable[str]) -> list[int]:
    """The blocks the adapter has tensors in, ascending: the layers a client can select."""
    return sorted({layer for key in keys if (layer := layer_of(key)) is not None})


def keys_of(keys: Iterable[str], layers: Iterable[int]) -> list[str]:
    """The keys a client trains and sends with ``layers`` selected: those layers' tensors plus
    the common ones, in the adapter's order."""
    chosen = set(layers)
    return [k for k in keys if (layer := layer_of(k)) is None or layer in chosen]

