"""The strategy shape every federated algorithm shares: reduce the client deltas (the
aggregation seam), then apply the algorithm's server update rule to the reduced delta."""

from __future__ import annotations

from fedtune.adapter_state import AdapterState
from fedtune.algorithms.aggregation import AggregationConfig, Aggregator
from fedtune.algorithms.aggregation.delta import Delta
from fedtune.protocol import Strategy


class AggregatingStrategy(Strategy):
    """``aggregate`` = ``server_update(x, Aggregator.reduce(x, updates))``. Subclasses define
    ``server_update`` (and may add instructions in ``configure_round`` or state)."""

    def __init__(self, params, aggregation: AggregationConfig | None = None, num_clients: int = 1, seed: int = 0,
                 privacy=None):
        self.params, self.num_clients = params, num_clients
        self.aggregator = Aggregator(aggregation, weighting=self.fixed_weighting(params), seed=seed, privacy=privacy)

    @classmethod
    def fixed_weighting(cls, params) -> str | None:
        """A weighting the algorithm imposes regardless of ``aggregation.weighting`` (None: none)."""
        return None

    def aggregate(self, round, global_adapter, updates):
        return self.server_update(round, global_adapter, self.aggregator.reduce(global_adapter, updates, round), updates)

    def configure_round(self, round, clients, lr, steps, global_adapter):
        instructions = super().configure_round(round, clients, lr, steps, global_adapter)
        if self.aggregator.privacy is not None:  # e.g. the norm clients clip their own delta to
            for ins in instructions:
                ins.config.update(self.aggregator.privacy.instruction_config())
        return instructions

    def state_dict(self):
        """The server update rule's state, then the aggregation seam's (prefixed ``aggregator/``)."""
        return {**self.server_state_dict(), **{f"aggregator/{k}": v for k, v in self.aggregator.state_dict().items()}}

    def load_state_dict(self, state):
        mine = {k: v for k, v in state.items() if k.startswith("aggregator/")}
        self.aggregator.load_state_dict({k.split("/", 1)[1]: v for k, v in mine.items()})
        self.load_server_state_dict({k: v for k, v in state.items() if k not in mine})

    def server_state_dict(self) -> dict:
        return {}

    def load_server_state_dict(self, state: dict) -> None:
        Strategy.load_state_dict(self, state)

    def round_report(self) -> dict:
        return self.aggregator.report

    def server_update(self, round: int, global_adapter: AdapterState, delta: Delta, updates) -> AdapterState:
        raise NotImplementedError
