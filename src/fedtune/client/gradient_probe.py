"""A gradient probe: per-tensor gradient statistics of the local loss at the start adapter, from
one pass over the client's data with no optimizer step. Selective layer fine-tuning scores layers
from it (``fedtune.selective.importance``; Sun et al., ISIT 2025, authors' code
``client.py::init_train/_forward_pass``).

Per batch the mean loss is back-propagated and, as in the authors' code, the gradients are *not*
zeroed between batches, so after batch t a tensor's gradient is G_t = g_1 + … + g_t. Per adapter
tensor the reply holds [Σ_t ‖G_t‖², Σ_t ‖θ‖², mean(G)²/std(G)] with G = Σ_t g_t the whole-data
gradient. The server asks with ``PROBE`` in the instruction; the reply carries the statistics
(``GRADIENT_STATS``) and no adapter, on both engines.
"""

from __future__ import annotations

import json
import time

import torch

from fedtune.client.batching import length_grouped_batches, round_rng
from fedtune.models.adapters.state import adapter_parameters, set_adapter
from fedtune.protocol import ClientInstruction, ClientUpdate

PROBE = "gradient_probe"  # instruction config: {"batches": n or null} (JSON)
GRADIENT_STATS = "gradient_stats"  # reply tensors: adapter key -> [grad_sq, param_sq, snr]


def probe_config(batches: int | None) -> dict:
    return {PROBE: json.dumps({"batches": batches})}


def gradient_probe(trainer, instruction: ClientInstruction, start, data) -> ClientUpdate:
    """The gradient statistics of every adapter tensor on this client's data at ``start``."""
    started = time.perf_counter()
    spec = json.loads(instruction.config[PROBE])
    model, objective, tokens = trainer.model, trainer.objective, data.tokens
    set_adapter(model, start)
    params = adapter_parameters(model)
    rng = round_rng(trainer.seed, instruction.round, instruction.client_id, "gradient-probe")
    batches = length_grouped_batches(list(range(len(tokens))), objective.lengths(tokens), trainer.cfg.batch_size, rng)
    batches = batches[: spec["batches"]] if spec["batches"] else batches
    trainer.client_id = instruction.client_id
    # ints only: a str in the tuple would hash differently in every process
    trainer.round_seed = hash((trainer.seed, instruction.round, instruction.client_id, -1)) & 0xFFFFFFFF
    torch.manual_seed(trainer.round_seed)
    objective.begin_round(trainer, tokens, [i for b in batches for i in b])  # e.g. DPO's reference log-probs

    grad_sq = dict.fromkeys(params, 0.0)
    model.train()
    model.zero_grad(set_to_none=True)
    for idx in batches:  # the running gradient G_t, never zeroed (the authors' pass)
        with trainer.precision.autocast():
            loss, _ = objective.loss(model, tokens, idx, trainer.pad_id)
        (loss / max(objective.step_weight(tokens, idx), 1)).backward()
        for key, p in params.items():
            grad_sq[key] += float(p.grad.double().pow(2).sum())
    model.eval()
    stats = {}
    for key, p in params.items():
        g = p.grad.double()
        std = float(g.std()) if g.numel() > 1 else 0.0
        snr = float(g.mean()) ** 2 / std if std > 0 else 0.0
        param_sq = len(batches) * float(p.detach().double().pow(2).sum())
        stats[key] = torch.tensor([grad_sq[key], param_sq, snr], dtype=torch.float64)
    model.zero_grad(set_to_none=True)
    return ClientUpdate(client_id=instruction.client_id, adapter={}, num_examples=data.num_examples,
                        metrics={"probe_batches": len(batches), "seconds": time.perf_counter() - started},
                        tensors={GRADIENT_STATS: stats})
