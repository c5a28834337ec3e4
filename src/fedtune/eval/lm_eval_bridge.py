"""lm-evaluation-harness (EleutherAI, v0.4.13), the field's standard evaluator, on the model
being evaluated — in memory, with its current adapter, offline by default.

Two ways in: the ``lm_eval`` task runs any harness task by name (its dataset cached), a task
YAML, or a directory of them (``include_path``); and the native ``generation`` and
``multiple_choice`` tasks take ``engine: lm_eval``, which writes their items to a JSONL file and
runs the equivalent harness task over it (``harness_task`` of each: the same prompt through the
chat template, the same extraction and normalisation) — fedtune's task definitions for local
files and for its own suite (``path: suite``). Both engines write the same item records, so a
native score can be checked against the harness item by item (tests/test_eval_tasks.py).

Calls go through ``HFLM(pretrained=<the PeftModel>, tokenizer=...)``: the harness then takes the
device from the model and ignores its ``peft=`` argument (next-wave.md §10). The run's system
prompt is the harness's ``system_instruction``; with the default ``apply_chat_template: true``
prompts are chat-formatted as in training. ``HF_DATASETS_OFFLINE`` is set for the call unless
``offline: false``: a task whose dataset is not cached fails with a one-line error that names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

from pydantic import Field

from fedtune.eval.tasks import TASKS, EvalTask, TaskParams
from fedtune.schema import ConfigError

EXTRA = "pip install 'fedtune[eval]'  (lm-eval 0.4.13)"


@contextlib.contextmanager
def _offline(on: bool):
    """Hugging Face offline for the call (``on``), the environment as it was afterwards."""
    saved = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    if on:
        os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def harness_model(evaluator, batch_size: int):
    """The harness's view of the evaluated model (built once per evaluator and batch size)."""
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise ConfigError(f"lm-eval is not installed: {EXTRA}") from None
    cache = evaluator.harness_models
    if batch_size not in cache:
        cache[batch_size] = HFLM(pretrained=evaluator.ws.model, tokenizer=evaluator.ws.tokenizer, batch_size=batch_size)
    return cache[batch_size]


def run_harness(evaluator, label: str, tasks: list, *, batch_size: int = 1, num_fewshot: int | None = None,
                limit: int | None = None, apply_chat_template: bool = True, include_path: str | None = None,
                offline: bool = True, builtin: bool = True) -> dict:
    """``lm_eval.simple_evaluate`` on the evaluated model; returns its results and samples.
    ``builtin``: index the harness's own task catalog (thousands of YAMLs; not for inline tasks)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    lm = harness_model(evaluator, batch_size)
    manager = TaskManager(include_path=include_path, include_defaults=builtin)
    with _offline(offline), evaluator.precision.autocast():
        try:
            out = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                                          apply_chat_template=apply_chat_template, task_manager=manager,
                                          system_instruction=evaluator.cfg.data.system_prompt, log_samples=True,
                                          bootstrap_iters=0)
        except Exception as e:  # noqa: BLE001 - a missing dataset or task, in one line
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            hint = (" — its dataset is not cached: run it once online (offline: false) to cache it, or point a "
                    "generation/multiple_choice task at a local file with engine: lm_eval") if offline else ""
            raise ValueError(f"eval task {label}: lm-eval could not run {tasks!r}: {first}{hint}") from None
    return out


def harness_numbers(results: dict) -> dict:
    """A task's numeric results, keyed as the harness names them (``exact_match,flexible``)."""
    return {k: float(v) for k, v in results.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "_stderr" not in k}


def run_local(task, evaluator, rows: list[dict]) -> list[dict]:
    """The harness's samples for a native task's ``rows``, through its ``harness_task`` (the rows
    travel in a temporary JSONL file the harness reads with the ``json`` builder)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "items.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        spec = task.harness_task(f"fedtune_{re.sub(r'[^A-Za-z0-9_]', '_', task.label)}", str(data))
        out = run_harness(evaluator, task.label, [spec], batch_size=task.params.harness_batch_size, builtin=False)
    (samples,) = out["samples"].values()
    return sorted(samples, key=lambda s: s["doc_id"])


class LmEvalParams(TaskParams):
    """A harness task: ``task`` names it (or a YAML file); ``include_path`` adds your task directory."""

    task: str
    include_path: str | None = None
    num_fewshot: int | None = Field(None, ge=0)
    batch_size: int = Field(1, ge=1)
    apply_chat_template: bool = True
    offline: bool = True


@TASKS.register("lm_eval", LmEvalParams)
class LmEvalTask(EvalTask):
    """Any lm-evaluation-harness task (cached or defined over local files)."""

    @property
    def label(self) -> str:
        return self.params.name or f"lm_eval_{Path(self.params.task).stem}"

    def run(self, evaluator, items):
        p = self.params
        yaml = p.task.endswith((".yaml", ".yml"))  # a task file needs no index of the built-in catalog
        if yaml and not Path(p.task).is_file():
            raise ValueError(f"eval task {self.label}: task file {p.task} does not exist")
        out = run_harness(evaluator, self.label, [str(Path(p.task).resolve()) if yaml else p.task],
                          batch_size=p.batch_size, num_fewshot=p.num_fewshot, limit=p.limit,
                          apply_chat_template=p.apply_chat_template, include_path=p.include_path,
                          offline=p.offline, builtin=not yaml)
        items.write([{"task": name, "doc_id": s["doc_id"], "arguments": [list(a) for a in s["arguments"]],
                      "responses": s["resps"], "filtered": s["filtered_resps"], "target": s["target"],
                      **{m: s[m] for m in s.get("metrics", [])}}
                     for name, samples in out["samples"].items() for s in samples])
        figures = {f"{name}/{k}" if len(out["results"]) > 1 else k: v
                   for name, res in out["results"].items() for k, v in harness_numbers(res).items()}
        return {**figures, "n": sum(len(s) for s in out["samples"].values())}
