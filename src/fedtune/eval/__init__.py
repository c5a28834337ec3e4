"""Evaluation: the Evaluator and one metric per file (exact match, reward accuracy), found by
``METRICS`` (``fedtune ls metrics``)."""

from fedtune.eval import exact_match, reward_accuracy  # noqa: F401  (each registers itself)
from fedtune.eval.registry import METRICS  # noqa: F401
