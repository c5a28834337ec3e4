"""The base of the two bounds every FL comparison needs (local-only, centralized): strategies
without parameters and without an aggregation step."""

from __future__ import annotations

from fedtune.protocol import Strategy


class Baseline(Strategy):
    def __init__(self, params=None, aggregation=None, num_clients: int = 1, seed: int = 0):
        self.params = params  # the registered empty parameter model; nothing is aggregated
