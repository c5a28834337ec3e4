"""Compressed updates on the built-in suite and model: global exact match against bytes sent per
round, for every codec, top-k at 1% and 10% with and without error feedback.

Usage: python benchmarks/compression.py [--model smollm2-135m-instruct] [--clients 4] [--rounds 4]
           [--steps 4] [--schemes none,fp16,bf16,int8,topk1,topk1-noef,topk10,topk10-noef] [--out DIR]

Every run: the same seed, data and clients; only ``communication.compress`` differs. Prints a
markdown table (exact match, MB up per round and its ratio to no compression, seconds) and
writes a comparison report with the exact-match-against-bytes plot.
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


def codec(scheme: str) -> dict | str:
    """``topk1-noef`` -> {name: topk, ratio: 0.01, error_feedback: false}; others by name."""
    if not scheme.startswith("topk"):
        return scheme
    percent, _, flag = scheme.removeprefix("topk").partition("-")
    return {"name": "topk", "ratio": int(percent) / 100, "error_feedback": flag != "noef"}


def main():
    p = suite_arguments(__doc__.splitlines()[0], rounds=4, steps=4)
    p.add_argument("--schemes", default="none,fp16,bf16,int8,topk1,topk1-noef,topk10,topk10-noef")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="compression-"))
    base = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            "train.lr=3e-3", "eval.every=0"]
    loaded = load_model(args.model)
    results, runs = {}, {}
    for scheme in args.schemes.split(","):
        run_dir = out / scheme
        sets = [*base, f"output.dir={run_dir}", f"name={scheme}", f"communication.compress={json.dumps(codec(scheme))}"]
        started = time.perf_counter()
        s = run_experiment(load_config(demo_config_path(), sets), loaded=loaded, progress=False)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        results[scheme] = {"exact_match": 100 * s["final"]["global"]["exact_match"],
                           "mb_up_per_round": sum(r["bytes_up"] for r in rows) / len(rows) / 1e6,
                           "seconds": time.perf_counter() - started}
        runs[scheme] = run_dir
        print(f"{scheme}: {results[scheme]}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    write_comparison(out / "report.html", runs, "fedtune: compressed updates")
    plain = results.get("none", {}).get("mb_up_per_round")
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| scheme | exact match % | MB up / round | ratio to none | seconds |")
    print("|---|---|---|---|---|")
    for scheme, r in results.items():
        ratio = f"{r['mb_up_per_round'] / plain:.3f}" if plain else "—"
        print(f"| {scheme} | {r['exact_match']:.1f} | {r['mb_up_per_round']:.2f} | {ratio} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
