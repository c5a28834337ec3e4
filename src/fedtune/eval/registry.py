"""The metric registry: ``eval.metrics: [NAME, ...]`` -> what the Evaluator computes.

A metric is one file in this package: a class registered with ``@METRICS.register(NAME)`` whose
``on_global(evaluator, adapter)`` scores the global test set with the model's current adapter
(already loaded) and whose ``on_client(evaluator, client)`` scores a client's own test split
(None where the metric has nothing to say there). Results are flat dicts merged per test set.
"""

from __future__ import annotations

from fedtune.schema import Registry, Section

METRICS = Registry("metric")


class Metric:
    def __init__(self, params: Section):
        self.params = params

    def on_global(self, evaluator, adapter) -> dict:
        raise NotImplementedError

    def on_client(self, evaluator, client: int) -> dict | None:
        return None
