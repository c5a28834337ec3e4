"""Evaluation: the Evaluator and one metric per file (exact match, reward accuracy, the safety
metrics: harmless rate, a classifier judge, an LLM judge; canary exposure), found by ``METRICS``
(``fedtune ls metrics``)."""

from fedtune.eval import (  # noqa: F401  (each registers itself)
    canary_exposure,
    exact_match,
    harmless_rate,
    llm_judge,
    reward_accuracy,
    safety_classifier,
)
from fedtune.eval.registry import METRICS  # noqa: F401
