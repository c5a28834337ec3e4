"""`fedtune eval`: a base model or an adapter on a config's test sets (global and per client),
with the config's metrics (``eval.metrics``: exact match, the safety metrics, ...), the config's
tasks and those named by ``--task`` (lm-eval, multiple choice, generation, ...), and, with
``--canaries``, the exposure of the secrets the config planted (``data.canaries``)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fedtune.config import ConfigError, load_config
from fedtune.engine.workspace import build_workspace
from fedtune.eval.evaluator import Evaluator
from fedtune.models.adapters.state import get_adapter
from fedtune.models.export import load_with_adapter
from fedtune.models.loader import LoadedModel, load_base


def task_entries(specs: list[str]) -> list[dict]:
    """``--task`` values as ``eval.tasks`` entries: a YAML/JSON file (one entry or a list), an
    inline mapping (``{type: generation, path: qa.jsonl}``), or ``TYPE:WHAT`` — WHAT is the data
    path, or the task name for ``lm_eval`` (``lm_eval:arc_easy``, ``generation:gsm8k.jsonl``)."""
    out = []
    for spec in specs:
        if spec.endswith((".yaml", ".yml", ".json")) and Path(spec).is_file():
            loaded = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
            out += loaded if isinstance(loaded, list) else [loaded]
        elif spec.lstrip().startswith("{"):
            out.append(yaml.safe_load(spec))
        elif ":" in spec:
            kind, what = spec.split(":", 1)
            out.append({"type": kind, ("task" if kind == "lm_eval" else "path"): what})
        else:
            raise ConfigError(f"--task {spec!r}: give TYPE:PATH (e.g. generation:qa.jsonl), lm_eval:TASK, "
                              "a {type: ...} mapping or a YAML file of tasks")
    return out


def evaluate_target(target: Path, adapter: Path | None, base: bool, overrides: list[str],
                    canaries: bool = False, tasks: list[str] = ()) -> dict:
    """``target`` is a run directory (config.yaml + adapter/) or an experiment YAML. The model is
    evaluated by the same Evaluator a run uses, so the figures match the run's metrics.jsonl;
    ``canaries`` adds the ``canary_exposure`` metric; ``tasks`` (``--task`` values) replace the
    config's ``eval.tasks``, whose items go to ``<run>/eval/cli/`` for a run directory."""
    target = Path(target)
    is_run = target.is_dir()
    if tasks:
        overrides = [*overrides, f"eval.tasks={json.dumps(task_entries(list(tasks)))}"]
    cfg = load_config(target / "config.yaml" if is_run else target, overrides)
    if canaries and cfg.data.canaries is None:
        raise ConfigError(f"--canaries: {target} plants no canaries (its config has no data.canaries)")
    if adapter is None and is_run and not base:
        adapter = target / "adapter"
    state = None
    if adapter is not None and not base:
        model, tokenizer = load_with_adapter(cfg.model, adapter)
        state, loaded, label = get_adapter(model), LoadedModel(model, tokenizer, cfg.model.name), f"{cfg.model.name} + {adapter}"
    else:  # a fresh LoRA starts at zero (B = 0): the base model's outputs exactly
        loaded, label = load_base(cfg.model), f"{cfg.model.name} (base)"
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"per_client": True})})
    ws = build_workspace(cfg, loaded, initial_adapter=state)
    also = ("canary_exposure",) if canaries else ()
    evaluator = Evaluator(cfg, ws, ws.dpo_reference(cfg.train), also, items_dir=target / "eval" / "cli" if is_run else None)
    result = evaluator.evaluate(ws.initial_adapter, tasks=True)
    names = {str(c.client_id): c.name for c in ws.data.clients}
    sets = {"global": result["global"], **{names[c]: m for c, m in result.get("clients", {}).items()}}
    return {"label": label, "sets": sets, "tasks": result.get("tasks", {}), "fairness": result.get("fairness", {})}
