"""Seconds per robust reduction of 10 client deltas the size of SmolLM2's LoRA adapter.

Usage: python benchmarks/reducer_cost.py [--clients 10] [--repeats 3]

For every registered reducer: the whole ``Aggregator.reduce`` (building the float64 deltas, then
the rule) and the rule alone on deltas built once, best of ``--repeats``. The baseline, measured in
the same run, is the coordinate-wise median by ``torch.sort`` along the client dim, tensor by tensor
(what the median did before ``order_statistics``); the ratio is the sorting network's median over it.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine

from fedtune.algorithms.aggregation import REDUCERS, AggregationConfig, Aggregator
from fedtune.algorithms.aggregation.delta import client_delta, client_weights
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.models.adapters import attach_adapter
from fedtune.models.adapters.state import get_adapter
from fedtune.models.loader import load_model
from fedtune.protocol import ClientUpdate


def best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def sort_median(deltas):
    """The baseline: torch.sort along dim 0 per stacked tensor, middle values averaged."""
    out = {}
    for key in deltas[0]:
        ordered = torch.stack([d[key] for d in deltas]).sort(dim=0).values
        n = len(deltas)
        out[key] = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    n = args.clients
    loaded = load_model("smollm2-135m-instruct")
    x = get_adapter(attach_adapter(loaded.model, load_config(demo_config_path()).model.adapter))
    gen = torch.Generator().manual_seed(0)
    ups = [ClientUpdate(i, {k: v + 1e-3 * torch.randn(v.shape, generator=gen) for k, v in x.items()}, 10)
           for i in range(n)]
    deltas = [client_delta(u, x) for u in ups]
    weights = client_weights(ups, "num_examples")
    size = sum(t.numel() for t in x.values())
    print(f"machine: {machine()}\n{n} deltas of {size / 1e6:.1f} M parameters ({len(x)} tensors), float64, "
          f"best of {args.repeats}\n")
    print("| reducer | Aggregator.reduce s | rule alone s |\n|---|---|---|")
    rule_alone = {}
    f = (n - 3) // 4  # the largest f every rule (Bulyan: 4f + 3 <= n) accepts
    for name in REDUCERS.names():
        spec = {"name": name} if name in ("mean", "norm_bound", "geometric_median", "dynamic") else {"name": name, "f": f}
        agg = Aggregator(AggregationConfig(reducer=spec))
        whole = best_of(args.repeats, lambda: agg.reduce(x, ups, 1))
        rule_alone[name] = best_of(args.repeats, lambda: agg.reducer.reduce(deltas, weights, 1))
        print(f"| {name} | {whole:.2f} | {rule_alone[name]:.2f} |")
    baseline = best_of(args.repeats, lambda: sort_median(deltas))
    print(f"\nbaseline median by torch.sort: {baseline:.2f} s; sorting-network median: {rule_alone['median']:.2f} s; "
          f"ratio {rule_alone['median'] / baseline:.2f}")


if __name__ == "__main__":
    main()
