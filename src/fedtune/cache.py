"""Where fedtune keeps what it can rebuild (processed data, token ids, converted tokenizers)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$FEDTUNE_CACHE, else $XDG_CACHE_HOME/fedtune, else ~/.cache/fedtune."""
    if os.environ.get("FEDTUNE_CACHE"):
        return Path(os.environ["FEDTUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedtune"
