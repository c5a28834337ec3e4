"""Every FL algorithm on the built-in suite, same seed, model, data, rounds and steps.

Usage: python benchmarks/algorithms.py [--rounds 4] [--steps 3] [--only fedavg,scaffold]
Non-IID split: each client holds its own facts and one skill rule (pathological). Prints a
markdown table (final global exact match, test loss, seconds, MB communicated) that includes the
local-only and centralized bounds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine

from fedtune.algorithms import ALGORITHMS
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import load_model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated subset of algorithms")
    p.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = p.parse_args()
    names = [a for a in ALGORITHMS.names() if not args.only or a in args.only.split(",")]
    out = Path(tempfile.mkdtemp())
    loaded = None
    rows = []
    for name in names:
        cfg = load_config(demo_config_path(), [f"algorithm.name={name}", f"federation.rounds={args.rounds}",
                                               f"train.steps={args.steps}", f"output.dir={out / name}", *args.set])
        loaded = loaded or load_model(cfg.model.name)
        s = run_experiment(cfg, loaded=loaded, progress=False)
        g = s["final"]["global"]
        rows.append((name, 100 * g["exact_match"], g["loss"], s["seconds"], s["bytes_total"] / 1e6))
        print(f"{name}: EM {100 * g['exact_match']:.1f}  loss {g['loss']:.3f}  {s['seconds']:.0f}s", flush=True)
    print(f"\nmachine: {machine()}\n")
    print("| algorithm | exact match % | test loss | seconds | MB communicated |")
    print("|---|---|---|---|---|")
    for name, em, loss, sec, mb in rows:
        print(f"| {name} | {em:.1f} | {loss:.3f} | {sec:.0f} | {mb:.1f} |")


if __name__ == "__main__":
    main()
