"""Server-side evaluation of a global adapter on the workspace's test sets (both engines).

Exact match and loss on the global test set (per record category too), optionally on each
client's own test split; for preference runs also reward accuracy on held-out pairs. For the
local-only baseline, every client's own adapter is evaluated and the figures are averaged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fedtune.adapter_state import AdapterState
from fedtune.client.hooks import ClientStateStore
from fedtune.client.objectives.preference import reference_logps
from fedtune.client.objectives.preference_losses import preference_metrics
from fedtune.config import RunConfig
from fedtune.data.tokenize import TokenizedSet
from fedtune.eval.exact_match import evaluate_sft
from fedtune.models.lora import set_adapter
from fedtune.precision import use_bf16

if TYPE_CHECKING:
    from fedtune.engine.simulation import Workspace

PERSONAL = "personal_adapter"  # ClientStateStore name of a client's own adapter (local-only baseline)


class Evaluator:
    """``reference`` is the DPO reference adapter (None = the base model, adapter disabled)."""

    def __init__(self, cfg: RunConfig, ws: "Workspace", store: ClientStateStore, reference: AdapterState | None):
        self.cfg, self.ws, self.store, self.reference = cfg, ws, store, reference
        self.bf16 = use_bf16(cfg.train.bf16)
        self.pad_id = ws.tokenizer.pad_token_id
        self._reference_test_logps = None

    def _eval_tokens(self, tokens: TokenizedSet, records: list[dict] | None = None) -> dict:
        """Exact match and loss; with ``records``, also exact match per record category."""
        result = evaluate_sft(self.ws.model, tokens, self.pad_id, self.cfg.eval.batch_size, self.bf16)
        out = result.as_dict()
        if records is not None:
            dropped = set(tokens.dropped)
            kept = [r for i, r in enumerate(records) if i not in dropped]
            by_cat: dict[str, list[bool]] = {}
            for rec, ok in zip(kept, result.correct):
                by_cat.setdefault(rec.get("category", ""), []).append(ok)
            out["by_category"] = {k: sum(v) / len(v) for k, v in sorted(by_cat.items())}
        return out

    def evaluate(self, global_adapter: AdapterState) -> dict:
        """Global (and per-client) test metrics. For the local baseline every client's own
        adapter is evaluated and the global figures are the mean over clients."""
        ws = self.ws
        if self.cfg.algorithm.name == "local":
            return self._evaluate_local(global_adapter)
        set_adapter(ws.model, global_adapter)
        out = {"global": self._eval_tokens(ws.global_test_tokens, ws.data.global_test)}
        if ws.global_test_pairs is not None and len(ws.global_test_pairs):
            out["global"].update(self._reward_accuracy(global_adapter))
        if self.cfg.eval.per_client:
            out["clients"] = {str(c): self._eval_tokens(t) for c, t in enumerate(ws.test_tokens) if len(t)}
        return out

    def _evaluate_local(self, global_adapter: AdapterState) -> dict:
        ws = self.ws
        per_client = {}
        for c in range(len(ws.train_tokens)):
            set_adapter(ws.model, self.store.get(c, PERSONAL) or global_adapter)
            entry = {"global": self._eval_tokens(ws.global_test_tokens, ws.data.global_test)}
            if self.cfg.eval.per_client and len(ws.test_tokens[c]):
                entry["own"] = self._eval_tokens(ws.test_tokens[c])
            per_client[str(c)] = entry
        mean = {k: sum(v["global"][k] for v in per_client.values()) / len(per_client) for k in ("exact_match", "loss")}
        cats = next(iter(per_client.values()))["global"]["by_category"]
        mean["by_category"] = {k: sum(v["global"]["by_category"][k] for v in per_client.values()) / len(per_client)
                               for k in cats}
        return {"global": {**mean, "n": len(ws.global_test_tokens)},
                "clients": {c: v.get("own", v["global"]) for c, v in per_client.items()}}

    def _reward_accuracy(self, adapter: AdapterState) -> dict:
        """Held-out pairs: share whose implicit reward β·(log π − log π_ref) prefers the chosen
        response, the mean reward margin, and the policy's own choice accuracy."""
        pairs, pad = self.ws.global_test_pairs, self.pad_id
        idx = list(range(len(pairs)))
        if self._reference_test_logps is None:
            self._reference_test_logps = reference_logps(self.ws.model, pairs, idx, self.reference, pad)
        policy = reference_logps(self.ws.model, pairs, idx, adapter, pad)
        beta = self.cfg.train.dpo_beta
        chosen = torch.tensor([beta * (policy[i][0] - self._reference_test_logps[i][0]) for i in idx])
        rejected = torch.tensor([beta * (policy[i][1] - self._reference_test_logps[i][1]) for i in idx])
        # choice_accuracy: the policy itself gives the chosen response the higher likelihood
        # (comparable across models, unlike rewards, which are relative to the reference).
        choice = sum(policy[i][0] > policy[i][1] for i in idx) / len(idx)
        return {**preference_metrics(chosen, rejected), "choice_accuracy": choice}
