"""Experiment tracking (``tracking: {backend: mlflow | tensorboard, ...}``; off by default):
the config, every metrics.jsonl row and the final artifacts, sent to a tracking backend."""

from fedtune.tracking import mlflow_tracker, tensorboard_tracker  # noqa: F401  (registers the backends)
from fedtune.tracking.registry import (
    TRACKERS,
    Tracker,
    check_available,
    flatten,
    start_tracker,
)

__all__ = ["TRACKERS", "Tracker", "check_available", "flatten", "start_tracker"]
