"""Selective layer fine-tuning on the built-in suite and model: global exact match against the
layer budget (1, 2, 4 of SmolLM2's 30 layers, and all) for each strategy, with the bytes sent
and the seconds spent per round measured next to it.

Usage: python benchmarks/selective.py [--model smollm2-135m-instruct] [--clients 4] [--rounds 4]
           [--steps 4] [--budgets 1,4] [--strategies top,bottom,both,client_top,strategic]
           [--balance 0.5] [--out DIR]

Every run: the same seed, data and clients; only ``selective`` differs ("all" is the plain run
with every layer). MB up / down per round are the engine's counts (the probe's exchange included);
seconds per round are the round's wall time and the clients' compute (forward, backward, step).
Prints a markdown table and writes a comparison report.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import load_model
from fedtune.report.compare import write_comparison


def main():
    p = suite_arguments(__doc__.splitlines()[0], rounds=4, steps=4)
    p.add_argument("--budgets", default="1,4")
    p.add_argument("--strategies", default="top,bottom,both,client_top,strategic")
    p.add_argument("--balance", type=float, default=0.5)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="selective-"))
    base = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            "train.lr=3e-3", "eval.every=0"]
    loaded = load_model(args.model)
    grid = [("all", None)] + [(s, int(b)) for b in args.budgets.split(",") for s in args.strategies.split(",")]
    results, runs = {}, {}
    for strategy, layers in grid:
        name = strategy if layers is None else f"{strategy}-{layers}"
        selective = "null" if layers is None else json.dumps(
            {"strategy": strategy, "layers": layers, "balance": args.balance if strategy == "strategic" else 0.0})
        run_dir = out / name
        sets = [*base, f"output.dir={run_dir}", f"name={name}", f"selective={selective}"]
        started = time.perf_counter()
        s = run_experiment(load_config(demo_config_path(), sets), loaded=loaded, progress=False)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        compute = [m["seconds_compute"] for r in rows for m in r["train"].values()]
        results[name] = {"exact_match": 100 * s["final"]["global"]["exact_match"],
                         "mb_up_per_round": sum(r["bytes_up"] for r in rows) / len(rows) / 1e6,
                         "mb_down_per_round": sum(r["bytes_down"] for r in rows) / len(rows) / 1e6,
                         "seconds_per_round": sum(r["seconds_train"] for r in rows) / len(rows),
                         "client_compute_seconds": sum(compute) / len(compute),
                         "distinct_layers": len({l for r in rows for v in r.get("selective", {}).get("layers", {}).values()
                                                 for l in v}),
                         "seconds": time.perf_counter() - started}
        runs[name] = run_dir
        print(f"{name}: {results[name]}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    write_comparison(out / "report.html", runs, "fedtune: selective layer fine-tuning")
    plain = results["all"]
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| strategy | layers | exact match % | MB up / round | ratio to all | MB down / round | s / round "
          "| client compute s | layers used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        strategy, _, layers = name.partition("-")
        print(f"| {strategy} | {layers or 'all'} | {r['exact_match']:.1f} | {r['mb_up_per_round']:.2f} | "
              f"{r['mb_up_per_round'] / plain['mb_up_per_round']:.3f} | {r['mb_down_per_round']:.2f} | "
              f"{r['seconds_per_round']:.1f} | {r['client_compute_seconds']:.2f} | {r['distinct_layers'] or 'all'} |")


if __name__ == "__main__":
    main()
