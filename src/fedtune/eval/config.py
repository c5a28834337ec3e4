"""The ``eval`` config section: when to evaluate, on what, with which metrics."""

from __future__ import annotations

from pydantic import Field

from fedtune.eval.registry import METRICS
from fedtune.eval.safety_prompts import SafetyEvalConfig
from fedtune.eval.tasks import TASKS
from fedtune.schema import Section


class EvalConfig(Section):
    every: int = Field(1, ge=0)  # rounds between evaluations; 0 = only at the end
    per_client: bool = False  # also evaluate on each client's own test split
    batch_size: int = Field(32, ge=1)
    # None = by the run's records: [exact_match] for SFT, [exact_match, reward_accuracy] for
    # preference, plus harmless_rate when the suite has a forbidden topic or safety prompts are set
    metrics: list[METRICS.choice()] | None = None
    safety: SafetyEvalConfig = SafetyEvalConfig()  # prompts and generation of the safety metrics
    # tasks with their own data (lm-eval, multiple choice, generation, perplexity, judges,
    # calibration): run at the final evaluation and every ``tasks_every`` rounds (0 = final only)
    tasks: list[TASKS.choice()] = []
    tasks_every: int = Field(0, ge=0)
