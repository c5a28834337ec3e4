"""A client round that alternates model and prompt training, the model's weights kept on the client.

FedSP (Dong et al. 2023; FederatedScope ``fedsp/worker/client.py``, ``pl_alter_train``): each
round the client first trains its auxiliary model's weights with the soft prompt frozen, then the
prompt with the model frozen, each for the round's steps (two ``train()`` calls there). The
weights are the client's own state (``PERSONAL_MODEL`` in its state store; the distributed
auxiliary model until it has trained); only the prompt is sent. Both phases draw the round's
batches from the same seed, as FederatedScope's two passes over one loader do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fedtune.adapter_state import AdapterState, clone
from fedtune.models.adapters.state import adapter_parameters, set_adapter
from fedtune.protocol import ClientInstruction, ClientUpdate

if TYPE_CHECKING:
    from fedtune.client.trainer import LocalData, LocalTrainer

PERSONAL_MODEL = "personal_model"  # ClientStateStore name of a client's own model weights


def model_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The base model's parameters (not the adapter's), each shared tensor once, by its first name."""
    return dict(model.get_base_model().named_parameters())


def snapshot(model) -> AdapterState:
    """The model weights every client starts from (taken before anyone trains)."""
    return clone(model_parameters(model))


def alternating_round(trainer: "LocalTrainer", instruction: ClientInstruction, start: AdapterState,
                      data: "LocalData") -> ClientUpdate:
    """FedSP's round: the client's model weights, then the prompt (from ``start``); returns the
    prompt's update with the model phase's loss and time in its metrics."""
    model, cid = trainer.model, instruction.client_id
    weights = model_parameters(model)
    own = trainer.store.get(cid, PERSONAL_MODEL)
    with torch.no_grad():
        for k, p in weights.items():
            p.copy_((own if own is not None else trainer.personal_start)[k])
    set_adapter(model, start)
    prompt = adapter_parameters(model)
    for p in prompt.values():
        p.requires_grad_(False)
    for p in weights.values():
        p.requires_grad_(True)
    try:  # phase 1: the model, prompt frozen (no FL hooks: these weights never leave the client)
        first = trainer._train(instruction, data, weights, federated=False)
    finally:
        for p in weights.values():
            p.requires_grad_(False)
        for p in prompt.values():
            p.requires_grad_(True)
    trainer.store.put(cid, PERSONAL_MODEL, clone(weights))
    update = trainer._train(instruction, data, prompt)  # phase 2: the prompt, model frozen
    m = update.metrics
    m["model_loss"], m["steps"] = first.metrics["loss"], m["steps"] + first.metrics["steps"]
    m["seconds"] += first.metrics["seconds"]
    m["seconds_compute"] += first.metrics["seconds_compute"]
    return update
