"""Client-side state that survives rounds: one safetensors file per client and name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from fedtune import adapter_state
from fedtune.adapter_state import AdapterState


class ClientStateStore:
    """Per-client persistent state (e.g. SCAFFOLD control variates, personal adapters): one
    safetensors file per client, name and round under ``root``. Only sampled clients' files are
    read, so memory does not grow with the number of clients.

    Files are versioned by the round that wrote them, so an interrupted round never leaks into a
    resumed run: ``rollback(r)`` drops versions newer than the last checkpoint, ``commit(r)``
    prunes versions superseded by it.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.round = 0  # the round being run: it writes version `round` and reads versions < round

    def _dir(self, client_id: int):
        return self.root / f"client_{client_id:05d}"

    def _versions(self, client_id: int, name: str) -> list[tuple[int, object]]:
        d = self._dir(client_id)
        if not d.exists():
            return []
        out = []
        for p in d.glob(f"{name}@*.safetensors"):
            out.append((int(p.stem.rsplit("@", 1)[1]), p))
        return sorted(out)

    def get(self, client_id: int, name: str) -> AdapterState | None:
        usable = [p for r, p in self._versions(client_id, name) if r <= self.round]
        return adapter_state.load(usable[-1]) if usable else None

    def put(self, client_id: int, name: str, state: Mapping[str, torch.Tensor]) -> None:
        adapter_state.save(state, self._dir(client_id) / f"{name}@{self.round}.safetensors")

    def _all(self):
        if not self.root.exists():
            return
        for d in self.root.glob("client_*"):
            names = {p.stem.rsplit("@", 1)[0] for p in d.glob("*@*.safetensors")}
            for name in names:
                yield int(d.name.split("_")[1]), name

    def rollback(self, last_committed: int) -> None:
        """Forget everything written after round ``last_committed`` (resume after a crash)."""
        for client_id, name in list(self._all()):
            for r, p in self._versions(client_id, name):
                if r > last_committed:
                    p.unlink()

    def commit(self, round: int) -> None:
        """Round ``round`` is checkpointed: keep only the newest version <= round of each file."""
        for client_id, name in list(self._all()):
            kept = [(r, p) for r, p in self._versions(client_id, name) if r <= round]
            for r, p in kept[:-1]:
                p.unlink()
