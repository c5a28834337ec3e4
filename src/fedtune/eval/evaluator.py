"""Server-side evaluation of adapters on the workspace's test sets (both engines).

The configured metrics (``eval.metrics``, one file each) score the global test set and, with
``eval.per_client``, each client's own test split (and the spread across clients, ``fairness``).
The configured tasks (``eval.tasks``, one file per type) score the global model on data of their
own when asked (``evaluate(..., tasks=True)``). ``evaluate_personal`` scores one adapter per
client (strategies with personal adapters, e.g. the local-only baseline) and reports the mean.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fedtune.adapter_state import AdapterState
from fedtune.eval.fairness import fairness
from fedtune.eval.registry import METRICS
from fedtune.eval.safety_prompts import read_prompts, suite_forbidden_prompts
from fedtune.eval.tasks import TASKS, ItemLog
from fedtune.models.adapters.state import set_adapter
from fedtune.models.device import model_device
from fedtune.precision import Precision, precision_for
from fedtune.synth.generation import build_generator

if TYPE_CHECKING:
    from fedtune.config import RunConfig
    from fedtune.engine.workspace import Workspace


def default_metrics(preference: bool, safety: bool = False) -> list[str]:
    """The metrics a run gets when ``eval.metrics`` is unset: by its records, and the
    harmless rate when it has harmful prompts to ask."""
    return (["exact_match", "reward_accuracy"] if preference else ["exact_match"]) + (["harmless_rate"] if safety else [])


class Evaluator:
    """``reference`` is the DPO reference adapter (None = the base model, adapter disabled);
    ``also`` names metrics computed besides the configured ones (``fedtune eval --canaries``);
    ``items_dir`` is where tasks write what they scored item by item (None = nowhere)."""

    def __init__(self, cfg: "RunConfig", ws: "Workspace", reference: AdapterState | None, also: tuple[str, ...] = (),
                 items_dir: Path | None = None):
        self.cfg, self.ws, self.reference = cfg, ws, reference
        self.pad_id = ws.tokenizer.pad_token_id
        chosen = cfg.eval.metrics
        if chosen is None:
            safety = bool(cfg.eval.safety.prompts or suite_forbidden_prompts(ws.data.global_test))
            chosen = [METRICS.config(n) for n in default_metrics(ws.global_test_pairs is not None, safety)]
        chosen = [*chosen, *(METRICS.config(n) for n in also if n not in {m.name for m in chosen})]
        self.metrics = [METRICS[m.name].target(m) for m in chosen]
        self.tasks = [TASKS[t.type].target(t) for t in cfg.eval.tasks]
        labels = [t.label for t in self.tasks]
        if len(set(labels)) < len(labels):
            raise ValueError(f"eval.tasks: two tasks share a label ({', '.join(labels)}); give one a name")
        self.items_dir = items_dir
        self._generators: dict[str, object] = {}  # the generation backends on this model, by their parameters
        self.harness_models: dict[int, object] = {}  # lm-eval's views of the model, by batch size
        self._answers: tuple[list[str], list[str]] | None = None  # this evaluation's safety answers
        self.seconds_generating = 0.0  # spent generating them

    @functools.cached_property
    def precision(self) -> Precision:
        """The evaluated model's autocast (``train.bf16`` on its device), found on first use."""
        return precision_for(self.cfg.train.bf16, model_device(self.ws.model))

    @functools.cached_property
    def safety_prompts(self) -> list[str]:
        """The harmful prompts of the safety metrics, read once per run (not once per evaluation)."""
        safety = self.cfg.eval.safety
        prompts = read_prompts(safety.prompts) if safety.prompts else suite_forbidden_prompts(self.ws.data.global_test)
        return prompts[: safety.limit] if safety.limit else prompts

    def safety_answers(self) -> tuple[list[str], list[str]]:
        """(harmful prompts, the current model's answers), generated once per evaluation and
        shared by every safety metric; the prompts go in with the run's system prompt, as in training."""
        if self._answers is None:
            safety = self.cfg.eval.safety
            prompts = self.safety_prompts
            generator = self.generator(safety.generation)
            before = generator.seconds
            answers = generator.generate([self.conversation(q) for q in prompts])
            self.seconds_generating = generator.seconds - before
            self._answers = (prompts, answers)
        return self._answers

    def generator(self, params):
        """A generation backend on the evaluated model for a metric or task (``params``: its
        ``generation`` section), built once per distinct parameters. A local backend's
        ``bf16: auto`` follows ``train.bf16``: the model generates in the precision it trains in."""
        if getattr(params, "bf16", None) == "auto":
            params = params.model_copy(update={"bf16": self.cfg.train.bf16})
        key = json.dumps(params.model_dump(mode="json"), sort_keys=True)
        if key not in self._generators:
            self._generators[key] = build_generator(params, self.ws.model, self.ws.tokenizer)
        return self._generators[key]

    def conversation(self, user: str) -> list[dict]:
        """One user turn with the run's system prompt, as the model saw in training."""
        system = [{"role": "system", "content": self.cfg.data.system_prompt}] if self.cfg.data.system_prompt else []
        return [*system, {"role": "user", "content": user}]

    def evaluate(self, adapter: AdapterState, tasks: bool = False, round: int | None = None) -> dict:
        """Global (and, with ``eval.per_client``, per-client) metrics of one adapter; with
        ``tasks``, the configured tasks' figures too (their items filed under ``round``)."""
        set_adapter(self.ws.model, adapter)
        out = {"global": self._global(adapter)}
        if self.cfg.eval.per_client:
            out["clients"] = {str(c): self._client(c) for c, t in enumerate(self.ws.test_tokens) if len(t)}
            if len(out["clients"]) > 1:
                out["fairness"] = fairness(out["clients"])
        if tasks and self.tasks:
            out["tasks"] = self.run_tasks(round)
        return out

    def run_tasks(self, round: int | None) -> dict:
        """Each task's figures on the model as it is now (its adapter already in place)."""
        name = "final" if round is None else f"round_{round}"
        out = {}
        for task in self.tasks:
            items = ItemLog(self.items_dir / task.label / f"{name}.jsonl" if self.items_dir else None)
            start = time.perf_counter()
            out[task.label] = {**task.run(self, items), "seconds": time.perf_counter() - start}
        return out

    def evaluate_personal(self, adapters: dict[int, AdapterState]) -> dict:
        """Each client's own adapter on the global test set (and, with ``eval.per_client``, on its
        own split: ``clients`` is the own split, ``clients_on_global`` the global test, with the
        spread across clients); the global figures are the mean over clients."""
        per_client = {}
        for c, adapter in adapters.items():
            set_adapter(self.ws.model, adapter)
            entry = {"global": self._global(adapter)}
            if self.cfg.eval.per_client and len(self.ws.test_tokens[c]):
                entry["own"] = self._client(c)
            per_client[str(c)] = entry
        out = {"global": mean_of([v["global"] for v in per_client.values()]),
               "clients": {c: v.get("own", v["global"]) for c, v in per_client.items()}}
        if self.cfg.eval.per_client:  # both views of each client's adapter: its own split and the global test
            out["clients_on_global"] = {c: v["global"] for c, v in per_client.items()}
            if len(out["clients"]) > 1:
                out["fairness"] = fairness(out["clients"])
        return out

    def _global(self, adapter: AdapterState) -> dict:
        self._answers = None  # a new adapter is in place: its answers are generated afresh
        out = {}
        for metric in self.metrics:
            out.update(metric.on_global(self, adapter))
        return out

    def _client(self, client: int) -> dict:
        out = {}
        for metric in self.metrics:
            out.update(metric.on_client(self, client) or {})
        return out


def mean_of(results: list[dict]) -> dict:
    """Key-wise mean of metric dicts (nested dicts too; a count that is equal everywhere stays an int)."""
    out = {}
    for key, first in results[0].items():
        values = [r[key] for r in results]
        if isinstance(first, dict):
            out[key] = mean_of(values)
        elif isinstance(first, int) and not isinstance(first, bool) and len(set(values)) == 1:
            out[key] = first
        else:
            out[key] = sum(values) / len(values)
    return out
