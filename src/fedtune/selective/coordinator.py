"""The server side of selective layer fine-tuning: when to select, the importance probe, the
selection itself, and the instruction that tells each client its layers.

At a selection round (round 0, then every ``every`` rounds; once with ``every: null``) the
sampled clients first run the importance probe at the global adapter (one extra exchange: the
global adapter down, K scores up; both counted in the round's bytes), then the strategy picks
each client's layers. Between selection rounds a client keeps its layers; a sampled client
without a selection gets the top-b_i layers of the data-size-weighted mean importance of the last
selection (the authors' ``selected_layers_global``), as does a client that missed the probe.
The selection is part of the checkpoint, so ``--resume`` trains exactly the same layers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from fedtune.client.gradient_probe import GRADIENT_STATS, probe_config
from fedtune.protocol import TRAIN_KEYS, ClientInstruction
from fedtune.selective.budgets import budget
from fedtune.selective.config import SelectiveConfig
from fedtune.selective.importance import layer_scores
from fedtune.selective.layers import candidate_layers, keys_of
from fedtune.selective.selection import objective, static_order, strategic, top_b

# runs probe instructions on the clients and returns their replies (the round loop's executor)
Probe = Callable[[list[ClientInstruction]], "object"]


class LayerSelection:
    def __init__(self, cfg: SelectiveConfig, adapter_keys, seed: int):
        self.cfg, self.seed, self.keys = cfg, seed, list(adapter_keys)
        self.layers = candidate_layers(self.keys)
        if not self.layers:
            raise ValueError("selective: the adapter has no tensors inside transformer blocks to select from")
        self.chosen: dict[int, list[int]] = {}  # client -> its layers at the last selection
        self.ranking: list[int] = list(self.layers)  # layers by mean importance at the last selection
        self.selected_at: int | None = None

    def budget(self, client: int) -> int:
        return budget(self.cfg, client, len(self.layers), self.seed)

    def due(self, round: int) -> bool:
        if self.selected_at is None:
            return True
        return self.cfg.every is not None and round % self.cfg.every == 0

    def assign(self, round: int, instructions: list[ClientInstruction], probe: Probe) -> dict:
        """Put each client's layers in its instruction; returns the round's report (its
        ``bytes_up``/``bytes_down`` are the probe's)."""
        cfg, clients = self.cfg, [ins.client_id for ins in instructions]
        report: dict = {"strategy": cfg.strategy}
        if not cfg.probes:
            order = static_order(cfg.strategy, self.layers)
            self.chosen = {c: sorted(order if cfg.strategy == "all" else order[: self.budget(c)]) for c in clients}
        elif self.due(round):
            report.update(self._select(round, instructions, probe))
        for ins in instructions:
            c = ins.client_id
            if c not in self.chosen:  # not selected at the last selection round (or missed its probe)
                self.chosen[c] = sorted(self.ranking[: self.budget(c)])
            ins.config[TRAIN_KEYS] = json.dumps(keys_of(self.keys, self.chosen[c]))
        report["layers"] = {str(c): self.chosen[c] for c in clients}
        return report

    def _select(self, round: int, instructions: list[ClientInstruction], probe: Probe) -> dict:
        """The importance probe on the instructed clients (from the adapter each will start
        from), then the strategy's choice for those that replied."""
        cfg, clients = self.cfg, [ins.client_id for ins in instructions]
        started = time.perf_counter()
        replies = probe([ClientInstruction(client_id=ins.client_id, round=round, lr=0.0, steps=0,
                                           start_from=ins.start_from, config=probe_config(cfg.probe_batches))
                         for ins in instructions])
        scored = {u.client_id: (layer_scores(u.tensors[GRADIENT_STATS], self.layers, cfg.metric), u.num_examples)
                  for _, u in replies.updates}
        answered = [c for c in clients if c in scored]
        self.chosen, self.selected_at = {}, round
        report = {"selected": True, "probed": answered, "bytes_up": replies.bytes_up,
                  "bytes_down": replies.bytes_down}
        if not answered:
            return report
        scores = np.array([scored[c][0] for c in answered])
        if cfg.normalize and scores.mean() > 0:
            scores = scores / scores.mean()
        sizes = np.array([scored[c][1] for c in answered], dtype=float)
        mean = (sizes[:, None] * scores).sum(0) / max(sizes.sum(), 1.0)
        self.ranking = [self.layers[j] for j in sorted(range(len(self.layers)), key=lambda j: (-mean[j], j))]
        budgets = [self.budget(c) for c in answered]
        if cfg.strategy == "client_top":
            cols = [top_b(scores[i], b) for i, b in enumerate(budgets)]
        else:
            cols = strategic(scores, budgets, cfg.balance, pad=cfg.pad_to_budget)
        self.chosen = {c: [self.layers[j] for j in cols[i]] for i, c in enumerate(answered)}
        report.update({"objective": objective(scores, cols, cfg.balance), "budgets": budgets,
                       "seconds": time.perf_counter() - started})
        return report

    # ------------------------------------------------------------------ checkpoint

    def state(self) -> dict:
        return {"chosen": {str(c): v for c, v in self.chosen.items()}, "ranking": self.ranking,
                "selected_at": self.selected_at}

    def load_state(self, state: dict) -> None:
        self.chosen = {int(c): list(v) for c, v in state["chosen"].items()}
        self.ranking, self.selected_at = list(state["ranking"]), state["selected_at"]


def layer_selection(cfg, adapter_keys) -> LayerSelection | None:
    """The run's layer selection (``cfg`` a RunConfig), None without ``selective``."""
    return LayerSelection(cfg.selective, adapter_keys, cfg.seed) if cfg.selective is not None else None
