"""The embedded engine: a plain loop in one process over one base model, swapping only adapters.

It holds no FL logic: the Strategy decides who trains how and how updates combine, the
LocalTrainer trains. The engine moves tensors between them, checks updates, evaluates,
writes the run directory and checkpoints, and resumes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.client.hooks import ClientStateStore
from fedtune.client.objectives.preference import reference_logps
from fedtune.client.objectives.preference_losses import preference_metrics
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.config import RunConfig
from fedtune.data.federated import FederatedData
from fedtune.data.tokenize import PreferenceTokens, TokenizedSet, pool
from fedtune.engine.progress import Progress
from fedtune.engine.run_dir import RunDir
from fedtune.engine.schedule import round_lr, sample_clients
from fedtune.eval.exact_match import evaluate_sft
from fedtune.models.lora import get_adapter, set_adapter
from fedtune.server.registry import build_strategy
from fedtune.server.update_checks import check_update

log = logging.getLogger("fedtune")
PERSONAL = "personal_adapter"


@dataclass
class Workspace:
    """What a run needs that is expensive to build: the LoRA model, tokenizer, tokenized data."""

    model: object  # peft model
    tokenizer: object
    data: FederatedData
    train_tokens: list[TokenizedSet]  # per client
    test_tokens: list[TokenizedSet]  # per client
    global_test_tokens: TokenizedSet
    initial_adapter: AdapterState
    data_report: dict = field(default_factory=dict)
    global_test_pairs: PreferenceTokens | None = None  # preference runs: held-out pairs


class Simulation:
    def __init__(self, cfg: RunConfig, ws: Workspace, run_dir: RunDir, progress: Progress | None = None):
        self.cfg, self.ws, self.run_dir = cfg, ws, run_dir
        self.progress = progress or Progress(enabled=False)
        self.centralized = cfg.algorithm.name == "centralized"
        self.strategy = build_strategy(cfg.algorithm, cfg.federation.num_clients)
        self.store = ClientStateStore(run_dir.clients)
        self.reference = None if cfg.train.reference == "base" else ws.initial_adapter
        self.trainer = LocalTrainer(ws.model, ws.tokenizer, cfg.train, self.store, seed=cfg.seed,
                                    reference=self.reference)
        self._reference_test_logps = None
        if self.centralized:
            self.local_data = [LocalData(0, pool(ws.train_tokens))]
        else:
            self.local_data = [LocalData(c, t) for c, t in enumerate(ws.train_tokens)]
        self.pad_id = ws.tokenizer.pad_token_id

    # --------------------------------------------------------------------- public

    def run(self, resume: bool = False) -> dict:
        cfg = self.cfg
        start_round, global_adapter = 0, ops.clone(self.ws.initial_adapter)
        if resume and (ckpt := self.run_dir.load_checkpoint()) is not None:
            last, global_adapter, strategy_state, _ = ckpt
            self.strategy.load_state_dict(strategy_state)
            self.store.rollback(last)
            self.run_dir.truncate_metrics(last)
            start_round = last + 1
            log.info("resuming after round %d", last)
        elif resume:
            self.store.rollback(-1)
            self.run_dir.truncate_metrics(-1)
        started = time.perf_counter()
        self.progress.start_rounds(cfg.federation.rounds, start_round)
        for r in range(start_round, cfg.federation.rounds):
            global_adapter = self._round(r, global_adapter)
            self.progress.advance_round()
        self.progress.stop()
        return self._finish(global_adapter, time.perf_counter() - started)

    # -------------------------------------------------------------------- a round

    def _round(self, r: int, global_adapter: AdapterState) -> AdapterState:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.store.round = r
        clients = [0] if self.centralized else sample_clients(cfg, r)
        steps = cfg.train.steps * (cfg.federation.per_round() if self.centralized else 1)
        lr = round_lr(cfg, r)
        instructions = self.strategy.configure_round(r, clients, lr, steps, global_adapter)

        updates, rejected, bytes_up, bytes_down = [], {}, 0, 0
        for ins in instructions:
            start = global_adapter
            if ins.start_from == "personal":
                start = self.store.get(ins.client_id, PERSONAL) or global_adapter
            bytes_down += ops.num_bytes(start) + sum(ops.num_bytes(t) for t in ins.tensors.values())
            self.progress.start_client(ins.client_id, ins.steps)
            update = self.trainer.train(ins, start, self.local_data[ins.client_id])
            bytes_up += ops.num_bytes(update.adapter) + sum(ops.num_bytes(t) for t in update.tensors.values())
            reason = check_update(update, global_adapter)
            if reason:
                log.warning("round %d: rejected update of client %d: %s", r, ins.client_id, reason)
                rejected[str(ins.client_id)] = reason
                continue
            if ins.start_from == "personal":
                self.store.put(ins.client_id, PERSONAL, update.adapter)
            updates.append(update)
        t_train = time.perf_counter() - t0

        if updates:
            global_adapter = self.strategy.aggregate(r, global_adapter, updates)
        else:
            log.warning("round %d: no valid update; the global adapter is kept", r)
        row = {
            "round": r,
            "clients": clients,
            "lr": lr,
            "train": {str(u.client_id): u.metrics for u in updates},
            "train_loss": _weighted_loss(updates),
            "rejected": rejected,
            "bytes_up": bytes_up,
            "bytes_down": bytes_down,
            "seconds_train": t_train,
        }
        t1 = time.perf_counter()
        last = r == cfg.federation.rounds - 1
        if last or (cfg.eval.every and (r + 1) % cfg.eval.every == 0):
            row["eval"] = self.evaluate(global_adapter)
        row["seconds_eval"] = time.perf_counter() - t1
        if last or (r + 1) % cfg.output.checkpoint_every == 0:
            self.run_dir.save_checkpoint(r, global_adapter, self.strategy.state_dict(), {"algorithm": self.strategy.name})
            self.store.commit(r)
        row["seconds"] = time.perf_counter() - t0
        self.run_dir.append_metrics(row)
        self.progress.round_done(row)
        return global_adapter

    # ------------------------------------------------------------------ evaluation

    def _eval_tokens(self, tokens: TokenizedSet, records: list[dict] | None = None) -> dict:
        """Exact match and loss; with ``records``, also exact match per record category."""
        result = evaluate_sft(self.ws.model, tokens, self.pad_id, self.cfg.eval.batch_size, self.trainer.bf16)
        out = result.as_dict()
        if records is not None:
            kept = [r for i, r in enumerate(records) if i not in set(tokens.dropped)]
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
            per_client = {}
            for c in range(len(ws.train_tokens)):
                set_adapter(ws.model, self.store.get(c, PERSONAL) or global_adapter)
                entry = {"global": self._eval_tokens(ws.global_test_tokens, ws.data.global_test)}
                if self.cfg.eval.per_client and len(ws.test_tokens[c]):
                    entry["own"] = self._eval_tokens(ws.test_tokens[c])
                per_client[str(c)] = entry
            mean = {k: sum(v["global"][k] for v in per_client.values()) / len(per_client)
                    for k in ("exact_match", "loss")}
            cats = next(iter(per_client.values()))["global"]["by_category"]
            mean["by_category"] = {k: sum(v["global"]["by_category"][k] for v in per_client.values()) / len(per_client)
                                   for k in cats}
            return {"global": {**mean, "n": ws.global_test_tokens.__len__()},
                    "clients": {c: v.get("own", v["global"]) for c, v in per_client.items()}}
        set_adapter(ws.model, global_adapter)
        out = {"global": self._eval_tokens(ws.global_test_tokens, ws.data.global_test)}
        if ws.global_test_pairs is not None and len(ws.global_test_pairs):
            out["global"].update(self._reward_accuracy(global_adapter))
        if self.cfg.eval.per_client:
            out["clients"] = {str(c): self._eval_tokens(t) for c, t in enumerate(ws.test_tokens) if len(t)}
        return out

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

    # ---------------------------------------------------------------------- finish

    def _finish(self, global_adapter: AdapterState, seconds: float) -> dict:
        rows = self.run_dir.read_metrics()
        final_eval = next((r["eval"] for r in reversed(rows) if "eval" in r), None)
        summary = {
            "name": self.cfg.name,
            "algorithm": self.cfg.algorithm.name,
            "model": self.cfg.model.name,
            "rounds": self.cfg.federation.rounds,
            "final": final_eval,
            "seconds": sum(r.get("seconds", 0.0) for r in rows),
            "bytes_total": sum(r["bytes_up"] + r["bytes_down"] for r in rows),
            "rejected_updates": sum(len(r.get("rejected", {})) for r in rows),
            "data": self.ws.data_report,
            "adapter": "adapter/",
        }
        set_adapter(self.ws.model, global_adapter)
        self.ws.model.save_pretrained(str(self.run_dir.path / "adapter"))
        if self.cfg.algorithm.name == "local":
            for c in range(len(self.ws.train_tokens)):
                personal = self.store.get(c, PERSONAL)
                if personal is not None:
                    set_adapter(self.ws.model, personal)
                    self.ws.model.save_pretrained(str(self.run_dir.path / "adapters" / f"client_{c}"))
            summary["adapter"] = "adapters/client_<i>/ (one per client; adapter/ is the untrained start)"
        self.run_dir.write_json("summary.json", summary)
        return summary


def _weighted_loss(updates) -> float | None:
    total = sum(u.metrics["examples"] for u in updates)
    if not total:
        return None
    return sum(u.metrics["loss"] * u.metrics["examples"] for u in updates) / total
