"""Every generated text cached by content, so a rerun or ``--resume`` regenerates nothing.

The key is a hash of what determines an output: the backend's identity (its model, and for the
run's own model the adapter's tensors), the conversation, the sampling parameters and the seed.
The store is one SQLite file (``$FEDTUNE_CACHE/generations.sqlite``): each batch is committed in
one transaction, so a killed process loses at most the batch it was generating, and several
processes (Flower nodes, pytest workers) can share it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from fedtune.cache import cache_root


def content_key(identity: object, conversation: object, params: dict, seed: int) -> str:
    """The cache key of one output (a hex SHA-256 of its inputs)."""
    blob = json.dumps([identity, conversation, params, seed], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class GenerationCache:
    """key -> generated text, persisted in SQLite (WAL journal: readers never block the writer)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else cache_root() / "generations.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT key, text FROM outputs WHERE key IN ({marks})", chunk).fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        with self._db:  # one transaction: all of the batch or none of it
            self._db.executemany("INSERT OR REPLACE INTO outputs (key, text) VALUES (?, ?)", items.items())

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
