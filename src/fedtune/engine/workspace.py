"""Build what a run needs once: model + LoRA, federated data, tokenized splits."""

from __future__ import annotations

from pathlib import Path

from fedtune.config import RunConfig
from fedtune.data.chat_templates import apply_template
from fedtune.data.federated import FederatedData
from fedtune.data.build import build_federated_data
from fedtune.data.ops.difficulty import scoring_context
from fedtune.adapter_state import AdapterState
from fedtune.data.tokenize import TokenizedSet, as_sft, tokenize_preference, tokenize_train
from fedtune.engine.simulation import Workspace
from fedtune.models.loader import LoadedModel, load_model
from fedtune.models.lora import attach_lora, get_adapter, set_adapter


def build_data(cfg: RunConfig, loaded: LoadedModel | None = None, cache_dir: Path | None = None) -> FederatedData:
    """The run's federated data. The run follows the data's client count (a natural partition has
    its own; ``empty_client: skip`` may leave some out)."""
    data = build_federated_data(cfg, cfg.train.record_kind, scoring_context(loaded, cfg.data),
                                cache_dir / "data" if cache_dir else None)
    if data.num_clients != cfg.federation.num_clients:
        cfg.federation.num_clients = data.num_clients
    return data


def tokenization_report(name: str, split: str, ts: TokenizedSet) -> list[dict]:
    """Rows for the data report: truncated examples and examples dropped because truncation
    removed their whole response."""
    rows = []
    if ts.truncated:
        rows.append({"client": name, "step": f"tokenize.{split}.truncated", "changed": ts.truncated})
    if ts.dropped:
        rows.append({"client": name, "step": f"tokenize.{split}", "dropped": len(ts.dropped)})
    return rows


def build_workspace(cfg: RunConfig, loaded: LoadedModel | None = None, cache_dir: Path | None = None,
                    initial_adapter: AdapterState | None = None) -> Workspace:
    """Load (or reuse) the base model, attach a fresh LoRA seeded by the run seed (or start from
    ``initial_adapter``, e.g. a previous stage's result), build and tokenize the data once.
    Reusing ``loaded`` lets several runs share one base model.

    Preference data is tokenized as pairs for training; its test sets are tokenized both as SFT
    records answering with the chosen response (for exact match) and as pairs (reward accuracy)."""
    loaded = loaded or load_model(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    if hasattr(loaded.model, "peft_config"):  # reused by an earlier run: drop its LoRA layers (no merge)
        loaded.model = loaded.model.unload()
    model = attach_lora(loaded.model, cfg.model.lora, seed=cfg.seed)
    loaded.model = model
    if initial_adapter is not None:
        set_adapter(model, initial_adapter)
    tok = loaded.tokenizer
    apply_template(tok, getattr(cfg.data, "template", None))
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
    report = {**data.report, "steps": steps,
              "clients": {c.name: {"train": len(t), "test": len(e)} for c, t, e in zip(data.clients, train, test)}}
    return Workspace(model, tok, data, train, test, global_test, get_adapter(model), report, pairs)
