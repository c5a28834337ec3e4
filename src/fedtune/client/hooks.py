"""Training hooks: how client-side FL algorithms (FedProx, SCAFFOLD, DP-SGD, layer selection)
change local training without the trainer knowing them by name.

The trainer calls, per round: ``on_round_start`` -> for each optimizer step
(``extra_loss`` added to the loss, ``after_optimizer_step``) -> ``on_round_end``, which may attach
tensors to the ``ClientUpdate``. Hooks are built from the ``ClientInstruction`` alone, so the
same instruction gives the same training on the embedded engine and on a Flower node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from fedtune.adapter_state import AdapterState
from fedtune.server.strategy import ClientInstruction, ClientUpdate


class ClientStateStore:
    """Per-client persistent state (e.g. SCAFFOLD control variates, personal adapters): one
    safetensors file per client, name and round under ``root``. Only sampled clients' files are
    read, so memory does not grow with the number of clients.

    Files are versioned by the round that wrote them, so an interrupted round never leaks into a
    resumed run: ``rollback(r)`` drops versions newer than the last checkpoint, ``commit(r)``
    prunes versions superseded by it.
    """

    def __init__(self, root):
        from pathlib import Path

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
        from fedtune import adapter_state

        usable = [p for r, p in self._versions(client_id, name) if r <= self.round]
        return adapter_state.load(usable[-1]) if usable else None

    def put(self, client_id: int, name: str, state: Mapping[str, torch.Tensor]) -> None:
        from fedtune import adapter_state

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


class TrainingHook:
    """Base hook: every method is a no-op. ``params`` maps adapter-state keys to live parameters.

    A hook with ``wants_initial_gradient = True`` receives, before the first update, the gradient
    of the local loss at the starting adapter on the round's first step of data.
    """

    wants_initial_gradient = False

    def on_initial_gradient(self, grads: dict[str, torch.Tensor]) -> None:
        pass

    def on_round_start(self, params: Mapping[str, torch.nn.Parameter], instruction: ClientInstruction) -> None:
        pass

    def extra_loss(self, params: Mapping[str, torch.nn.Parameter]) -> torch.Tensor | None:
        return None

    def after_optimizer_step(self, params: Mapping[str, torch.nn.Parameter], lr: float) -> None:
        pass

    def on_round_end(self, params: Mapping[str, torch.nn.Parameter], update: ClientUpdate) -> None:
        pass


HookFactory = Callable[[ClientInstruction, ClientStateStore], "TrainingHook | None"]
HOOK_FACTORIES: list[HookFactory] = []


def register_hook(factory: HookFactory) -> HookFactory:
    """Decorator: a factory that returns a hook when the instruction asks for it, else None."""
    HOOK_FACTORIES.append(factory)
    return factory


def build_hooks(instruction: ClientInstruction, store: ClientStateStore) -> list[TrainingHook]:
    hooks = [factory(instruction, store) for factory in HOOK_FACTORIES]
    return [h for h in hooks if h is not None]
