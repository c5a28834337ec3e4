"""The objective registry: ``train.objective: {name: NAME, ...}`` -> a local training objective.

An objective is one file in this package: a class registered with
``@OBJECTIVES.register(NAME, Params)`` that says which records it trains on (``record_kind``:
"sft" examples or "preference" pairs) and computes a micro-batch's loss. The trainer calls,
per round: ``begin_round`` -> ``loss`` per micro-batch -> ``end_round`` -> ``round_metrics``.
"""

from __future__ import annotations

from fedtune.schema import Registry

OBJECTIVES = Registry("objective")


def record_kind(objective) -> str:
    """The records the configured objective trains on: "sft" or "preference"."""
    return OBJECTIVES[objective.name].target.record_kind
