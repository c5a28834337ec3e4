"""`fedtune eval`: a base model or an adapter on a config's test sets (global and per client)."""

from __future__ import annotations

from pathlib import Path

from fedtune.config import load_config
from fedtune.data.chat_templates import apply_template
from fedtune.data.tokenize import tokenize_sft
from fedtune.engine.workspace import build_data
from fedtune.eval.exact_match import evaluate_sft
from fedtune.models.export import load_with_adapter
from fedtune.models.loader import load_base
from fedtune.precision import use_bf16


def evaluate_target(target: Path, adapter: Path | None, base: bool, overrides: list[str]) -> dict:
    """``target`` is a run directory (config.yaml + adapter/) or an experiment YAML."""
    target = Path(target)
    is_run = target.is_dir()
    cfg = load_config(target / "config.yaml" if is_run else target, overrides)
    if adapter is None and is_run and not base:
        adapter = target / "adapter"
    if adapter is not None and not base:
        model, tokenizer = load_with_adapter(cfg.model, adapter)
        label = f"{cfg.model.name} + {adapter}"
    else:
        loaded = load_base(cfg.model)
        model, tokenizer, label = loaded.model, loaded.tokenizer, f"{cfg.model.name} (base)"
    apply_template(tokenizer, getattr(cfg.data, "template", None))
    data = build_data(cfg)
    sets = {"global": data.global_test, **{c.name: c.test for c in data.clients if c.test}}
    bf16 = use_bf16(cfg.train.bf16)
    results = {}
    for name, records in sets.items():
        tokens = tokenize_sft(records, tokenizer, cfg.data.max_length, cfg.data.system_prompt)
        results[name] = evaluate_sft(model, tokens, tokenizer.pad_token_id, cfg.eval.batch_size, bf16).as_dict()
    return {"label": label, "sets": results}
