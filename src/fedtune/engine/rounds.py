"""The round loop both engines share, with the client side left to a ``ClientExecutor``.

One round: the Strategy configures the sampled clients -> the executor gets their updates
(in this process for the embedded engine; as Flower Messages for the Flower engine) -> every
update is checked (malformed or non-finite ones are rejected and named) -> the Strategy
aggregates -> evaluation, the metrics row and the checkpoint go to the run directory.
``run(resume=True)`` continues from the last checkpoint; ``finish`` writes adapter/ and summary.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Protocol

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.algorithms import build_strategy
from fedtune.algorithms.aggregation.delta import client_deltas, client_weights
from fedtune.algorithms.aggregation.geometry import relative_drift
from fedtune.algorithms.update_checks import check_update
from fedtune.attacks import ATTACKS, attacker_ids
from fedtune.attacks.simulation import AttackedClients, harm
from fedtune.client.state_store import ClientStateStore
from fedtune.compression.transport import CODEC, compress_download, decompress
from fedtune.compression.transport import instruction_config as compression_config
from fedtune.config import ConfigError, RunConfig
from fedtune.defenses import PosthocDefense
from fedtune.engine.progress import Progress
from fedtune.engine.run_dir import RunDir
from fedtune.engine.schedule import round_lr, sample_clients
from fedtune.eval.evaluator import Evaluator
from fedtune.eval.forgetting import stream_report
from fedtune.models.adapters.state import set_adapter
from fedtune.privacy.client_level import client_level_privacy
from fedtune.protocol import ClientInstruction, ClientUpdate, Strategy
from fedtune.selective.coordinator import layer_selection
from fedtune.synth import SYNTHESIZERS
from fedtune.tracking import Tracker, start_tracker

if TYPE_CHECKING:
    from fedtune.engine.workspace import Workspace

CLIENT_ADAPTER = "client_adapter"  # run-directory folder of the travelling adapter on the client model (offsite)
PERSONAL = "personal_adapter"  # ClientStateStore name of a client's own adapter (strategies with personal_adapters)

log = logging.getLogger("fedtune")


class RoundFailed(RuntimeError):
    """Too few sampled clients replied in a round. Nothing of that round was written: the run
    directory holds the previous checkpoint, and ``--resume`` continues from it."""


@dataclass
class ClientReplies:
    """What came back for one round's instructions, in instruction order."""

    updates: list[tuple[ClientInstruction, ClientUpdate]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # client id -> why no update arrived
    rejected: dict[str, str] = field(default_factory=dict)  # client id -> why a reply was unusable
    senders: dict[int, str] = field(default_factory=dict)  # client id -> who sent it, e.g. "node 42"
    # simulation ground truth: the clients whose update an attack replaced (the strategy never reads it)
    attackers: list[int] = field(default_factory=list)
    # secure aggregation: ``updates`` holds one update, the weighted mean of these clients' adapters
    # (client id -1, num_examples their total); the server never sees an update of one client
    summed: list[int] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0


class ClientExecutor(Protocol):
    """Runs the sampled clients' local training for one round and returns their replies."""

    def begin(self, first_round: int) -> None:
        """Called once before the first round this process runs (``first_round`` > 0 on resume)."""

    def execute(self, round: int, work: list[tuple[ClientInstruction, AdapterState]]) -> ClientReplies: ...


class RoundLoop:
    """Round bookkeeping shared by the engines. ``min_replies`` is the number of sampled
    clients that must reply (valid or not) for a round to count; None means all of them.
    ``engine`` names the engine in summary.json."""

    def __init__(self, cfg: RunConfig, ws: "Workspace", run_dir: RunDir, executor: ClientExecutor,
                 progress: Progress | None = None, store: ClientStateStore | None = None,
                 min_replies: int | None = None, strategy: Strategy | None = None, engine: str = "embedded"):
        if cfg.attack is not None:  # simulated attackers sit between the clients and the server
            executor = AttackedClients(executor, cfg.attack, attacker_ids(cfg.attack, cfg.federation.num_clients, cfg.seed),
                                       cfg.seed, craft_here=not getattr(executor, "runs_node_attacks", False)
                                       or ATTACKS[cfg.attack.method].target.omniscient)
        self.cfg, self.ws, self.run_dir, self.executor, self.engine = cfg, ws, run_dir, executor, engine
        self.progress = progress or Progress(enabled=False)
        self.privacy = client_level_privacy(cfg)
        self.selective = layer_selection(cfg, ws.initial_adapter)  # which layers each client trains, or None
        self.strategy = strategy or build_strategy(cfg.algorithm, cfg.federation.num_clients, cfg.aggregation,
                                                   seed=cfg.seed, privacy=self.privacy, topology=cfg.topology)
        self.stopped: str | None = None  # why the run ended before its last round (the privacy budget)
        self.store = store or ClientStateStore(run_dir.clients)
        reference = ws.dpo_reference(cfg.train)
        self.evaluator = Evaluator(cfg, ws, ws.to_server(reference) if reference is not None else None,
                                   items_dir=run_dir.path / "eval")
        self.client_evaluator = None  # offsite: the client model's own score too (FS-LLM's emulator.*)
        if ws.client is not None and ws.client.label:
            self.client_evaluator = Evaluator(cfg, replace(ws, model=ws.client.model), reference)
        self.min_replies = min_replies
        self.tracker = Tracker()  # the experiment tracker run() starts (this base logs nothing)
        self.defense = None
        if cfg.defense.posthoc is not None:
            if self.strategy.personal_adapters:
                raise ConfigError(f"defense.posthoc fine-tunes the global adapter; {self.strategy.name} has none")
            self.defense = PosthocDefense(cfg, ws.model, ws.tokenizer, self.store, run_dir.path)
        self.synthesis = None  # a server-side synthesis method (KnowledgeSG) after the last round
        if cfg.synth is not None and (method := SYNTHESIZERS[cfg.synth.method].target).runs_on == "server":
            if self.strategy.personal_adapters:
                raise ConfigError(f"synth.method {cfg.synth.method} fine-tunes the global adapter; "
                                  f"{self.strategy.name} has none")
            self.synthesis = method(cfg, ws.model, ws.tokenizer, self.store, run_dir.path)

    # --------------------------------------------------------------------- public

    def run(self, resume: bool = False) -> dict:
        cfg = self.cfg
        start_round, global_adapter = 0, ops.clone(self.ws.initial_adapter)
        if resume and (ckpt := self.run_dir.load_checkpoint()) is not None:
            last, global_adapter, strategy_state, meta = ckpt
            self.strategy.load_state_dict(strategy_state)
            if self.selective is not None:
                self.selective.load_state(meta["selective"])
            self.store.rollback(last)
            self.run_dir.truncate_metrics(last, restore=meta.get("metrics_row"))
            start_round = last + 1
            log.info("resuming after round %d", last)
        elif resume:
            self.store.rollback(-1)
            self.run_dir.truncate_metrics(-1)
        self.tracker = start_tracker(cfg, self.run_dir.path, resume, self.run_dir.read_metrics())  # after the truncation
        self.executor.begin(start_round)
        started = time.perf_counter()
        self.progress.start_rounds(cfg.federation.rounds, start_round)
        with self.tracker:  # closed however the run ends
            try:
                for r in range(start_round, cfg.federation.rounds):
                    if self._over_budget(r):
                        break
                    global_adapter = self.round(r, global_adapter)
                    self.progress.advance_round()
            finally:
                self.progress.stop()
            return self.finish(global_adapter, time.perf_counter() - started)

    def _over_budget(self, r: int) -> bool:
        """Whether running round ``r`` would spend more than ``privacy.client_level.max_epsilon``;
        says so once (the previous round's checkpoint is the one ``--resume`` continues from)."""
        if self.privacy is None or not self.privacy.exceeds_budget(r + 1):
            return False
        if self.stopped is None:
            self.stopped = (f"privacy budget: round {r} would bring ε to {self.privacy.epsilon(r + 1):.3g} > "
                            f"max_epsilon {self.privacy.dp.max_epsilon:g}; stopped after round {r - 1}")
            log.warning("%s", self.stopped)
        return True

    def evaluate(self, global_adapter: AdapterState, r: int | None = None, tasks: bool = False) -> dict:
        """The evaluation of round ``r``'s result: the global adapter (with ``tasks``, on the
        ``eval.tasks`` too), or the mean over clients' own adapters for a strategy with personal
        adapters — on the server's model (with offsite, the adapter plugged into the full model;
        the client model's own score beside it)."""
        server = self.ws.to_server
        if self.strategy.personal_adapters:
            return self.evaluator.evaluate_personal({c: server(self._personal(c, global_adapter))
                                                     for c in range(len(self.ws.train_tokens))})
        out = self.evaluator.evaluate(server(global_adapter), tasks=tasks, round=r)
        if self.client_evaluator is not None:
            out[self.ws.client.label] = self.client_evaluator.evaluate(global_adapter)["global"]
        return out

    def _personal(self, client: int, global_adapter: AdapterState) -> AdapterState:
        """A client's own adapter (the global start until it has trained)."""
        saved = self.store.get(client, PERSONAL)
        return saved if saved is not None else global_adapter

    # -------------------------------------------------------------------- a round

    def round(self, r: int, global_adapter: AdapterState) -> AdapterState:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.store.round = r
        lr = round_lr(cfg, r)
        instructions = self.strategy.configure_round(r, sample_clients(cfg, r), lr, cfg.train.steps, global_adapter)
        for ins in instructions:  # how the clients compress what they send (communication.compress)
            ins.config.update(compression_config(cfg.communication.compress, cfg.seed))
        clients = [ins.client_id for ins in instructions]
        selection = None
        if self.selective is not None:  # each client's layers (after the importance probe, at a selection round)
            selection = self.selective.assign(r, instructions, lambda probes: self._execute(r, probes, global_adapter))

        replies = self._execute(r, instructions, global_adapter)
        rejected = dict(replies.rejected)
        updates, round_starts = [], {}
        for ins, update in replies.updates:
            start = round_starts[ins.client_id] = self._start_adapter(ins, global_adapter)
            trained = ins.train_keys(start)  # selective layers: what the client trained and sent
            expected = start if trained is None else {k: start[k] for k in trained}
            reason = decompress(ins, update, expected) if CODEC in ins.config else None
            reason = reason or check_update(update, expected)
            if reason:
                who = replies.senders.get(ins.client_id)
                log.warning("round %d: rejected update of client %d%s: %s", r, ins.client_id,
                            f" ({who})" if who else "", reason)
                rejected[str(ins.client_id)] = f"{who}: {reason}" if who else reason
                continue
            if trained is not None:  # the untrained layers are the client's start
                update.adapter, update.trained = {**start, **update.adapter}, trained
            updates.append(update)
        if self.strategy.personal_adapters and updates:  # each client's own adapter, after gossip if any
            remote = getattr(self.executor, "run_mix_jobs", None)  # where the clients mix (their nodes)
            mixed = self.strategy.mix(r, global_adapter, updates, partial(remote, r) if remote else None,
                                      round_starts) or {}
            for update in updates:
                self.store.put(update.client_id, PERSONAL, mixed.get(update.client_id, update.adapter))
        t_train = time.perf_counter() - t0

        previous = global_adapter
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
            "failed": replies.failed,
            # what crossed between clients and server; nothing does without communication
            "bytes_up": replies.bytes_up if self.strategy.communicates else 0,
            "bytes_down": replies.bytes_down if self.strategy.communicates else 0,
            "seconds_train": t_train,
        }
        if selection is not None:  # the layers each client trained; the probe's bytes are the round's too
            row["bytes_up"] += selection.pop("bytes_up", 0) if self.strategy.communicates else 0
            row["bytes_down"] += selection.pop("bytes_down", 0) if self.strategy.communicates else 0
            row["selective"] = selection
        if len(updates) > 1 and not replies.summed:  # how differently the clients moved (heterogeneity)
            row["drift"] = relative_drift(client_deltas(updates, previous),
                                          client_weights(updates, cfg.aggregation.weighting))
        if updates and (report := self.strategy.round_report()):
            row["aggregation"] = report  # e.g. the rule that ran and the clients it kept; gossip's graph
            row["bytes_up"] += report.get("bytes", 0)  # adapters sent between clients (each one up and down)
            row["bytes_down"] += report.get("bytes", 0)
        if replies.attackers:  # measurable harm: how far the round moved from the benign clients' mean
            benign = [u for u in updates if u.client_id not in replies.attackers]
            row["attack"] = {"clients": replies.attackers,
                             **harm(previous, global_adapter, benign, cfg.aggregation.weighting)}
        if self.privacy is not None:  # ε spent after this round's release
            row["privacy"] = {"client_level": self.privacy.account(r + 1)}
        if cfg.privacy.sample_level is not None:  # each trained client's ε over its DP-SGD steps so far
            row.setdefault("privacy", {})["sample_level"] = {
                "epsilon": {str(u.client_id): u.metrics["dp_epsilon"] for u in updates if "dp_epsilon" in u.metrics},
                "delta": cfg.privacy.sample_level.delta}
        last = r == cfg.federation.rounds - 1 or self._over_budget(r + 1)  # the budget's last round is final too
        if self.synthesis is not None and last:  # the server's synthesis, scored against the model it starts from
            before = self.evaluate(global_adapter)
            global_adapter, row["synth"] = self.synthesis.apply(r, global_adapter, self.ws.initial_adapter)
            row["synth"]["eval_before"] = before
        if self.defense is not None and self.defense.due(r):  # the server's own fine-tune of the aggregate
            global_adapter, row["defense"] = self.defense.apply(r, global_adapter)
        t1 = time.perf_counter()
        tasks = last or bool(cfg.eval.tasks_every and (r + 1) % cfg.eval.tasks_every == 0)
        if tasks or (cfg.eval.every and (r + 1) % cfg.eval.every == 0):
            row["eval"] = self.evaluate(global_adapter, r, tasks)
        row["seconds_eval"] = time.perf_counter() - t1
        if last or (r + 1) % cfg.output.checkpoint_every == 0:
            # The round's row travels in the checkpoint too: a crash after the checkpoint but before
            # the row reaches metrics.jsonl must not lose it, since --resume will not rerun the round.
            row["seconds"] = time.perf_counter() - t0
            self.run_dir.save_checkpoint(r, global_adapter, self.strategy.state_dict(),
                                         {"algorithm": self.strategy.name, "metrics_row": row,
                                          **({"selective": self.selective.state()} if self.selective else {})})
            self.store.commit(r)
        row["seconds"] = time.perf_counter() - t0
        self.run_dir.append_metrics(row)
        self.tracker.log_row(row)
        self.progress.round_done(row)
        return global_adapter

    def _execute(self, r: int, instructions: list[ClientInstruction], global_adapter: AdapterState) -> ClientReplies:
        """Send ``instructions`` with their start adapters (compressed for the download when
        configured) and collect enough replies, or fail the round."""
        cfg = self.cfg
        work = [(ins, compress_download(cfg.communication.download, cfg.seed, ins, self._start_adapter(ins, global_adapter)))
                for ins in instructions]
        replies = self.executor.execute(r, work)
        self._require_replies(r, instructions, replies)
        return replies

    def _start_adapter(self, ins: ClientInstruction, global_adapter: AdapterState) -> AdapterState:
        if ins.start_from == "personal":
            return self._personal(ins.client_id, global_adapter)
        return global_adapter

    def _require_replies(self, r: int, instructions: list[ClientInstruction], replies: ClientReplies) -> None:
        sampled = len(instructions)
        needed = sampled if self.min_replies is None else min(self.min_replies, sampled)
        got = len(replies.summed) if replies.summed else len(replies.updates) + len(replies.rejected)
        for cid, why in replies.failed.items():
            log.warning("round %d: no update from client %s: %s", r, cid, why)
        if got >= needed:
            return
        missing = "; ".join(f"client {c}: {why}" for c, why in replies.failed.items())
        ckpt = self.run_dir.checkpoints / "LATEST"
        after = f"after the checkpoint of round {r - 1}" if ckpt.exists() else "before any checkpoint"
        raise RoundFailed(
            f"round {r} failed: {got} of {sampled} sampled clients replied, {needed} required "
            f"(min_replies). Missing: {missing or 'none'}. The run stopped {after}; bring the clients "
            f"back and resume it to continue from there."
        )

    # ---------------------------------------------------------------------- finish

    def finish(self, global_adapter: AdapterState, seconds: float) -> dict:
        rows = self.run_dir.read_metrics()
        final_eval = next((r["eval"] for r in reversed(rows) if "eval" in r), None)
        summary = {
            "name": self.cfg.name,
            "algorithm": self.cfg.algorithm.name,
            "model": self.cfg.model.name,
            "engine": self.engine,
            "rounds": self.cfg.federation.rounds,
            "final": final_eval,
            "seconds": sum(r.get("seconds", 0.0) for r in rows),
            "bytes_total": sum(r["bytes_up"] + r["bytes_down"] for r in rows),
            "rejected_updates": sum(len(r.get("rejected", {})) for r in rows),
            "failed_clients": sum(len(r.get("failed", {})) for r in rows),
            "data": self.ws.data_report,
            "adapter": "adapter/",
        }
        quality = {c: {k: v for k, v in m.items() if k.startswith("quality_")}
                   for r in rows for c, m in r.get("train", {}).items() if "quality_kept" in m}
        if quality:  # each client's filter and its last band (data_report.json too)
            summary["data"] = {**summary["data"], "quality": quality}
            self.run_dir.write_json("data_report.json", summary["data"])
        if any("privacy" in r for r in rows):
            summary["privacy"] = _privacy_summary(rows)
        if self.stopped:
            summary["stopped"] = self.stopped
        if (schedule := self.cfg.data.schedule) is not None:  # lifelong tasks: each client's scores per task
            streams = [self.ws.task_stream(c, schedule, self.cfg.seed) for c in range(len(self.ws.train_tokens))]
            summary["task_stream"] = {**stream_report(rows, {str(s.client_id): s.order_names for s in streams},
                                                      schedule.rounds_per_task), "replay": schedule.replay}
        if self.synthesis is not None:
            summary["synth"] = self.synthesis.summary(summary.get("privacy"), rows[-1].get("synth", {}) if rows else {})
        set_adapter(self.ws.model, self.ws.to_server(global_adapter))
        self.ws.model.save_pretrained(str(self.run_dir.path / "adapter"))
        if self.ws.client is not None:  # the adapter as it travelled, on the client model
            set_adapter(self.ws.client.model, global_adapter)
            self.ws.client.model.save_pretrained(str(self.run_dir.path / CLIENT_ADAPTER))
            layout = self.ws.client.layout
            summary["offsite"] = {"method": layout["method"], "client_model": str(self.ws.client.directory),
                                  "client_adapter": f"{CLIENT_ADAPTER}/",
                                  "distill_loss": layout["distill_losses"][::max(1, len(layout["distill_losses"]) - 1)]}
        if self.strategy.personal_adapters:
            for c in range(len(self.ws.train_tokens)):
                personal = self.store.get(c, PERSONAL)
                if personal is not None:
                    set_adapter(self.ws.model, self.ws.to_server(personal))
                    self.ws.model.save_pretrained(str(self.run_dir.path / "adapters" / f"client_{c}"))
            summary["adapter"] = "adapters/client_<i>/ (one per client; adapter/ is the untrained start)"
        self.run_dir.write_json("summary.json", summary)
        self.tracker.finish(summary, self.run_dir.path)
        return summary


def _privacy_summary(rows: list[dict]) -> dict:
    """The run's privacy spend: client-level ε after the last round; sample-level, each client's
    latest ε (it only grows) and their maximum, the run's guarantee to every client."""
    out = {}
    client_level = [r["privacy"]["client_level"] for r in rows if "client_level" in r.get("privacy", {})]
    if client_level:
        out["client_level"] = client_level[-1]
    sample_level = [r["privacy"]["sample_level"] for r in rows if "sample_level" in r.get("privacy", {})]
    if sample_level:
        latest = {c: e for s in sample_level for c, e in s["epsilon"].items()}
        out["sample_level"] = {"epsilon": latest, "epsilon_max": max(latest.values(), default=0.0),
                               "delta": sample_level[-1]["delta"]}
    return out


def _weighted_loss(updates: list[ClientUpdate]) -> float | None:
    total = sum(u.metrics["examples"] for u in updates)
    if not total:
        return None
    return sum(u.metrics["loss"] * u.metrics["examples"] for u in updates) / total
