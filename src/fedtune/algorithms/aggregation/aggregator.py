"""The aggregation seam: (per-update transforms) -> the configured reducer -> one float64 delta.

Strategies call ``Aggregator.reduce(global_adapter, updates, round)`` and apply their own server
update rule to the result (FedAvg's step, server momentum, Adam/Yogi/Adagrad moments, SCAFFOLD),
so a robust reducer or a DP wrapper applies to every strategy at once. ``report`` describes the
last reduction for the round's metrics row (the rule, which clients it kept, the rule's notes).
With client-level DP (``fedtune.privacy.client_level``) the deltas are clipped before the
reducer (then the mean, with equal weights) and the noise is added to its result. Updates that
trained only some tensors (selective layers) are reduced key group by key group, each over the
clients that trained it (``coverage``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fedtune.adapter_state import AdapterState
from fedtune.algorithms.aggregation.coverage import coverage_groups
from fedtune.algorithms.aggregation.delta import Delta, client_deltas, client_weights
from fedtune.algorithms.aggregation.registry import REDUCERS, AggregationConfig
from fedtune.protocol import ClientUpdate

log = logging.getLogger("fedtune")

# A transform sees every delta of the round with its weights and returns the deltas to reduce.
Transform = Callable[[list[Delta], list[float]], list[Delta]]


class Aggregator:
    def __init__(self, cfg: AggregationConfig | None = None, weighting: str | None = None,
                 transforms: list[Transform] = (), seed: int = 0, privacy=None):
        self.cfg = cfg or AggregationConfig()
        self.weighting = weighting or self.cfg.weighting  # a strategy may fix it (OpenFedLLM's FedOpt)
        self.reducer = REDUCERS[self.cfg.reducer.name].target(self.cfg.reducer, seed)
        self.transforms = list(transforms)
        self.privacy = privacy  # a ClientLevelPrivacy, or None
        self.report: dict = {}

    def reduce(self, global_adapter: AdapterState, updates: list[ClientUpdate], round: int = 0) -> Delta:
        """The round's aggregated delta: reduce_i(y_i - x) with the configured weights. With fewer
        updates than the reducer is defined for, the round keeps the global adapter (a zero
        delta, as Flower's Bulyan skips such a round), logged and reported."""
        deltas = client_deltas(updates, global_adapter)
        weights = client_weights(updates, self.weighting)
        for transform in self.transforms:
            deltas = transform(deltas, weights)
        if self.privacy is not None:  # DP-FedAvg: clipped deltas, equal weights (the noise assumes them)
            deltas = self.privacy.clip(deltas, updates)
            weights = [1.0 / len(deltas)] * len(deltas)
        groups = coverage_groups(updates, list(deltas[0]))
        if len(groups) == 1 and len(groups[0][0]) == len(updates):
            return self._reduce(deltas, weights, updates, round)
        # selective layers: each group of keys is reduced over the clients that trained it alone
        merged, kept, notes = {k: 0 * d for k, d in deltas[0].items()}, set(), {}
        for members, keys in groups:
            sub = [updates[i] for i in members]
            part = self._reduce([{k: deltas[i][k] for k in keys} for i in members],
                                client_weights(sub, self.weighting), sub, round)
            merged.update(part)
            kept.update(self.report["kept"])
            notes.update({k: v for k, v in self.report.items() if k not in ("rule", "kept")})
        self.report = {"rule": self.report["rule"], "kept": sorted(kept), "groups": len(groups), **notes}
        return merged

    def _reduce(self, deltas: list[Delta], weights: list[float], updates: list[ClientUpdate], round: int) -> Delta:
        """The configured reducer (and DP noise) on one set of deltas; sets ``report``."""
        needed = self.reducer.min_clients()
        if len(deltas) < needed:
            log.warning("round %d: %d updates, %s needs at least %d; the global adapter is kept",
                        round, len(deltas), self.cfg.reducer.name, needed)
            self.report = {"rule": self.cfg.reducer.name, "kept": [], "skipped": f"{len(deltas)} < {needed} updates"}
            return {k: 0 * d for k, d in deltas[0].items()}
        result = self.reducer.reduce(deltas, weights, round)
        ids = [u.client_id for u in updates]
        self.report = {"rule": result.rule or self.cfg.reducer.name, "kept": [ids[i] for i in result.kept]}
        self.report.update(result.notes)
        if self.privacy is not None:
            noisy = self.privacy.privatize(result.delta, sum(u.clients for u in updates), round)
            self.report["privacy"] = self.privacy.report
            return noisy
        return result.delta

    def state_dict(self) -> dict:
        return self.privacy.state_dict() if self.privacy is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.privacy is not None:
            self.privacy.load_state_dict(state)
