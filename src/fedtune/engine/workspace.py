"""What a run needs that is expensive to build — model + adapter, federated data, tokenized
splits — built once (``build_workspace``) and shared by the engine, the evaluator and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fedtune.adapter_state import AdapterState
from fedtune.client.train_config import TrainConfig
from fedtune.config import RunConfig
from fedtune.data.build import build_federated_data
from fedtune.data.chat_templates import apply_template
from fedtune.data.federated import FederatedData
from fedtune.data.ops.difficulty import scoring_context
from fedtune.data.task_stream import TaskStream, TaskStreamConfig, task_stream
from fedtune.data.tokenize import (
    PreferenceTokens,
    TokenizedSet,
    as_sft,
    tokenize_preference,
    tokenize_train,
)
from fedtune.models.adapters import attach_adapter
from fedtune.models.adapters.state import get_adapter, set_adapter, soft_prompt
from fedtune.models.loader import LoadedModel, load_base
from fedtune.offsite import ClientSide, build_client_side
from fedtune.synth.step import synthesis_step


@dataclass
class Workspace:
    """What a run needs that is expensive to build: the model with its adapter, tokenizer, tokenized data."""

    model: object  # peft model (the base model with the run's adapter)
    tokenizer: object
    data: FederatedData
    train_tokens: list[TokenizedSet]  # per client
    test_tokens: list[TokenizedSet]  # per client
    global_test_tokens: TokenizedSet
    initial_adapter: AdapterState
    data_report: dict = field(default_factory=dict)
    global_test_pairs: PreferenceTokens | None = None  # preference runs: held-out pairs
    # offsite: the clients' stand-in for ``model`` (emulator, FedSP's auxiliary model); the
    # adapters that travel are its adapters, ``initial_adapter`` too
    client: ClientSide | None = None

    @property
    def trained_model(self):
        """The model the clients train: the client model with ``offsite``, else ``model``."""
        return self.client.model if self.client is not None else self.model

    def task_stream(self, client: int, schedule: TaskStreamConfig | None, seed: int) -> TaskStream | None:
        """Client ``client``'s lifelong task stream (``data.schedule``), None without one."""
        return task_stream(schedule, client, self.data.clients[client].train, self.train_tokens[client].dropped, seed)

    def to_server(self, adapter: AdapterState) -> AdapterState:
        """A travelling adapter as the server's ``model`` takes it (offsite's plug-in)."""
        return self.client.to_server(adapter) if self.client is not None else adapter
    def dpo_reference(self, train: TrainConfig) -> AdapterState | None:
        """The preference objectives' reference: None = the base model (adapter disabled), or the
        adapter this run started from (``train.objective.reference: start``)."""
        return self.initial_adapter if train.reference == "start" else None



def build_data(cfg: RunConfig, loaded: LoadedModel | None = None, cache_dir: Path | None = None,
               transcripts: Path | None = None) -> FederatedData:
    """The run's federated data (its client count may differ from ``federation.num_clients``: a
    natural partition has its own, ``empty_client: skip`` may leave some out; the run follows
    the data, see ``fit_federation``). ``transcripts``: where simulating synthesis methods write
    their calls (default ``<run>/synth/transcripts``)."""
    return build_federated_data(cfg, cfg.train.record_kind, scoring_context(loaded, cfg.data),
                                cache_dir / "data" if cache_dir else None, synthesis_step(cfg, loaded, transcripts))


def fit_federation(cfg: RunConfig, data: FederatedData) -> RunConfig:
    """``cfg`` with ``federation.num_clients`` set to the data's client count (a copy when it differs)."""
    if data.num_clients == cfg.federation.num_clients:
        return cfg
    return cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"num_clients": data.num_clients})})


def tokenization_report(name: str, split: str, ts: TokenizedSet) -> list[dict]:
    """Rows for the data report: truncated examples and examples dropped because truncation
    removed their whole response."""
    rows = []
    if ts.truncated:
        rows.append({"client": name, "step": f"tokenize.{split}.truncated", "changed": ts.truncated})
    if ts.dropped:
        rows.append({"client": name, "step": f"tokenize.{split}", "dropped": len(ts.dropped)})
    return rows


def noisy_examples(records: list[dict], tokens) -> list[int]:
    """Positions, in the tokenized training set, of the records marked ``noisy`` (the built-in
    suite's corrupted answers): the ground truth a data-quality report compares scores with."""
    dropped = set(tokens.dropped)
    kept = [r for i, r in enumerate(records) if i not in dropped]
    return [j for j, r in enumerate(kept) if r.get("noisy")]


def build_workspace(cfg: RunConfig, loaded: LoadedModel | None = None, cache_dir: Path | None = None,
                    initial_adapter: AdapterState | None = None) -> Workspace:
    """Load (or reuse) the base model, attach a fresh LoRA seeded by the run seed (or start from
    ``initial_adapter``, e.g. a previous stage's result), build and tokenize the data once.
    Reusing ``loaded`` lets several runs share one base model.

    Preference data is tokenized as pairs for training; its test sets are tokenized both as SFT
    records answering with the chosen response (for exact match) and as pairs (reward accuracy)."""
    loaded = loaded or load_base(cfg.model)
    if hasattr(loaded.model, "peft_config"):  # reused by an earlier run: drop its adapter (no merge)
        loaded.model = loaded.model.get_base_model() if soft_prompt(loaded.model) else loaded.model.unload()
    tok = loaded.tokenizer
    apply_template(tok, getattr(cfg.data, "template", None))
    client, server_layers = None, None
    if cfg.offsite is not None:  # the owner builds (or loads) the clients' stand-in from its model
        client, server_layers = build_client_side(cfg, loaded.model, tok)
    model = attach_adapter(loaded.model, cfg.model.adapter, seed=cfg.seed, layers=server_layers)
    loaded.model = model
    trained = client.model if client is not None else model
    if initial_adapter is not None:
        set_adapter(trained, initial_adapter)
    data = build_data(cfg, loaded, cache_dir)
    tokens_dir = cache_dir / "tokens" if cache_dir else None
    ml, sp = cfg.data.max_length, cfg.data.system_prompt

    preference = data.kind == "preference"

    def tok_set(records):  # SFT examples; a preference pair answers with its chosen response
        return tokenize_train([as_sft(r) for r in records] if preference else records, "sft", tok, ml, sp, tokens_dir)

    train = [tokenize_train(c.train, data.kind, tok, ml, sp, tokens_dir) for c in data.clients]
    test = [tok_set(c.test) for c in data.clients]
    global_test = tok_set(data.global_test)
    pairs = tokenize_preference(data.global_test, tok, ml, sp, tokens_dir) if preference else None
    steps = list(data.report.get("steps", []))
    for c, tr, te in zip(data.clients, train, test):
        steps += tokenization_report(c.name, "test", te)
        if preference:
            steps += [{"client": c.name, "step": "tokenize.train.pairs", "dropped": len(tr.dropped)}] if tr.dropped else []
        else:
            steps += tokenization_report(c.name, "train", tr)
    steps += tokenization_report("global", "test", global_test)
    clients = {c.name: {"train": len(t), "test": len(e)} for c, t, e in zip(data.clients, train, test)}
    for c, t in zip(data.clients, train):
        if noisy := noisy_examples(c.train, t):  # the suite's corrupted records, where it made some
            clients[c.name]["noisy"] = noisy
    report = {**data.report, "steps": steps, "clients": clients}
    return Workspace(model, tok, data, train, test, global_test, get_adapter(trained), report, pairs, client)
