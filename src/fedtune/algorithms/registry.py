"""The algorithm registry: ``algorithm: {name: NAME, ...}`` -> a Strategy.

An algorithm is one file in this package: its server Strategy (registered with
``@ALGORITHMS.register(NAME, Params)``), its parameter model and, where it changes local
training, its client hook (``fedtune.client.hooks.register_hook``). Every Strategy class is built
the same way: ``cls(params, aggregation, num_clients, seed)``.
"""

from __future__ import annotations

from fedtune.algorithms.aggregation import AggregationConfig
from fedtune.protocol import Strategy
from fedtune.schema import Registry, Section

ALGORITHMS = Registry("algorithm")


def build_strategy(algorithm: Section, num_clients: int, aggregation: AggregationConfig | None = None,
                   seed: int = 0, privacy=None, topology=None) -> Strategy:
    """The Strategy for ``algorithm`` (a validated parameter model) over ``num_clients`` clients;
    ``seed`` (the run's) drives randomized aggregation rules; ``privacy`` (a ClientLevelPrivacy)
    wraps the aggregation seam with client-level DP. A decentralized ``topology`` has no server
    algorithm: its clients gossip (``fedtune.decentralized``)."""
    if topology is not None and topology.mode == "decentralized":
        from fedtune.decentralized.gossip import Gossip

        return Gossip(topology, num_clients, seed)
    extra = {"privacy": privacy} if privacy is not None else {}
    return ALGORITHMS[algorithm.name].target(algorithm, aggregation or AggregationConfig(), num_clients, seed, **extra)
