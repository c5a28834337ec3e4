"""Decentralized rounds without a server: learned-graph gossip over LoRA adapters
(DeLAMA-inspired; the graph learning is pFedGraph's). ``topology: {mode: decentralized, ...}``;
docs/decentralized.md."""

from fedtune.decentralized.config import TopologyConfig  # noqa: F401
