"""Data-Juicer-style processing ops, one file each, found by ``OPS`` (``fedtune ls ops``): each
takes a client's records and returns which to keep."""

from fedtune.data.ops import (  # noqa: F401  (each registers itself)
    alnum_ratio,
    char_repetition,
    dedup,
    difficulty,
    flagged_words,
    length,
)
from fedtune.data.ops.registry import OPS  # noqa: F401
