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

from fedtune.client.state_store import ClientStateStore
from fedtune.protocol import ClientInstruction, ClientUpdate


class TrainingHook:
    """Base hook: every method is a no-op. ``params`` maps adapter-state keys to live parameters.

    A hook with ``wants_initial_gradient = True`` receives, before the first update, the gradient
    of the local loss at the starting adapter on the round's first step of data.
    """

    wants_initial_gradient = False
    runs_last = False  # consumes the finished update (compression): after every other hook's on_round_end

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
    return sorted((h for h in hooks if h is not None), key=lambda h: h.runs_last)
