"""Share of a federated round spent outside client training and evaluation.

Usage: python benchmarks/round_overhead.py [--rounds 3]
Runs a demo-sized FedAvg experiment on the built-in model and, per round, splits the wall time
into client compute (forward/backward/optimizer steps), evaluation, and everything else —
adapter swaps in and out of the model, update checks, aggregation, checkpoint, metrics I/O.
Target: everything else <= 5% of the round.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import machine

from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp()) / "run"
    cfg = load_config(demo_config_path(), [f"federation.rounds={args.rounds}", f"output.dir={out}", "eval.every=1"])
    run_experiment(cfg, progress=False)
    print(f"machine: {machine()}")
    print(f"{'round':>5} {'round s':>8} {'compute s':>9} {'eval s':>7} {'other s':>8} {'other %':>8}")
    shares = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        compute = sum(m["seconds_compute"] for m in row["train"].values())
        other = row["seconds"] - compute - row["seconds_eval"]
        share = other / (row["seconds"] - row["seconds_eval"])
        shares.append(share)
        print(f"{row['round']:>5} {row['seconds']:>8.2f} {compute:>9.2f} {row['seconds_eval']:>7.2f} {other:>8.3f} {share:>8.2%}")
    print(f"overhead outside client compute and eval: mean {sum(shares) / len(shares):.2%} of the round (target <= 5%)")


if __name__ == "__main__":
    main()
