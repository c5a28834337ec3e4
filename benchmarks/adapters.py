"""Every adapter method on the built-in suite and model: global exact match, trainable
parameters, bytes per round, seconds per round and peak memory, one method per process.

Usage: python benchmarks/adapters.py [--methods lora,dora,ia3,prefix,prompt,p-tuning]
           [--model smollm2-135m-instruct] [--clients 4] [--rounds 4] [--steps 4] [--out DIR]

Every run: the same seed, data and clients; only ``model.adapter`` (and its learning rate)
differs. Methods that train a few vectors (IA³, soft prompts) get ``--vector-lr`` (default 3e-2),
the weight adapters (LoRA, DoRA) ``--lr`` (3e-3): the usual tenfold gap between them. Each method
runs in its own process, so "peak MB" is that process's maximum resident memory (model, data,
training and evaluation together).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

VECTOR_METHODS = ("ia3", "prefix", "prompt", "p-tuning")


def run_one(args) -> dict:
    """One method's run in this process; returns its figures."""
    from safetensors.torch import load_file

    from fedtune.commands.demo import demo_config_path
    from fedtune.config import load_config
    from fedtune.engine.runner import run_experiment
    from fedtune.models.loader import load_model

    lr = args.vector_lr if args.one in VECTOR_METHODS else args.lr
    run_dir = args.out / args.one
    sets = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            f"train.lr={lr}", "eval.every=0", f"output.dir={run_dir}", f"name={args.one}",
            f"model.adapter={{method: {args.one}}}"]
    started = time.perf_counter()
    s = run_experiment(load_config(demo_config_path(), sets), loaded=load_model(args.model), progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ckpt = run_dir / "checkpoints"
    state = load_file(str(ckpt / (ckpt / "LATEST").read_text().strip() / "global_adapter.safetensors"))
    return {"exact_match": 100 * s["final"]["global"]["exact_match"], "lr": lr,
            "trainable": sum(t.numel() for t in state.values()),
            "mb_up_per_round": sum(r["bytes_up"] for r in rows) / len(rows) / 1e6,
            "seconds_per_round": sum(r["seconds_train"] for r in rows) / len(rows),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.perf_counter() - started}


def main():
    p = suite_arguments(__doc__.splitlines()[0])
    p.add_argument("--methods", default="lora,dora,ia3,prefix,prompt,p-tuning")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--vector-lr", type=float, default=3e-2)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one method here
    args = p.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="adapters-"))
    if args.one:  # the child: one method, its figures as the last line
        print(json.dumps(run_one(args)))
        return
    results = {}
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--one", method, "--out", str(args.out), "--model", args.model,
               "--clients", str(args.clients), "--rounds", str(args.rounds), "--steps", str(args.steps),
               "--lr", str(args.lr), "--vector-lr", str(args.vector_lr)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{method}: {results[method]}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nmachine: {machine()}\nrun directories: {args.out}\n")
    print("| method | lr | exact match % | trainable parameters | MB up / round | s / round | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for method, r in results.items():
        print(f"| {method} | {r['lr']:g} | {r['exact_match']:.1f} | {r['trainable']:,} | {r['mb_up_per_round']:.3f} | "
              f"{r['seconds_per_round']:.1f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
