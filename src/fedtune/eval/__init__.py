"""Evaluation: the Evaluator and one metric per file (exact match, reward accuracy, the safety
metrics: harmless rate, a classifier judge, an LLM judge; canary exposure), found by ``METRICS``
(``fedtune ls metrics``); and one task per file, each over data of its own (generation with
answer extraction, multiple choice, perplexity, lm-evaluation-harness, MT-Bench-style judges,
CONQORD calibration), found by ``TASKS`` (``fedtune ls tasks``)."""

from fedtune.eval import (  # noqa: F401  (each registers itself)
    calibration,
    canary_exposure,
    exact_match,
    generation_task,
    harmless_rate,
    judge,
    llm_judge,
    lm_eval_bridge,
    multiple_choice,
    perplexity,
    reward_accuracy,
    safety_classifier,
)
from fedtune.eval.registry import METRICS  # noqa: F401
from fedtune.eval.tasks import TASKS  # noqa: F401
