"""FedGC on a strongly non-IID split of the built-in suite (each client holds one skill rule):
FedAvg without generated content against FedAvg with it, for each allocation (guidance dual)
and each guidance (allocation equal), the built-in model as the generator; global exact match,
the generated share, and the clients' drift (mean distance of their last-round updates from
their mean). All arms in one run, same seed and data.

Usage: python benchmarks/fedgc.py [--model smollm2-135m-instruct] [--clients 4] [--rounds 4]
           [--steps 4] [--budget 32] [--arms none,equal/dual,...] [--out DIR]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

ARMS = "none,equal/dual,inverse_size/dual,balance/dual,equal/prompt,equal/data"
TASK = ("invented facts about fictional people (their city, guild and pet) and invented string-transformation "
        "rules applied to English words")


def main():
    p = suite_arguments(__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--arms", default=ARMS)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="fedgc-"))

    from fedtune.commands.demo import demo_config_path
    from fedtune.config import load_config
    from fedtune.engine.runner import run_experiment
    from fedtune.models.loader import load_model

    loaded = load_model(args.model)
    base = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            "data.suite.rule_concentration=0", f"train.lr={args.lr}", "eval.every=0"]
    results = {}
    for arm in args.arms.split(","):
        sets = [*base, f"output.dir={out / arm.replace('/', '-')}", f"name={arm.replace('/', '-')}"]
        if arm != "none":
            allocation, guidance = arm.split("/")
            sets.append(f"synth={{method: fedgc, budget: {args.budget}, allocation: {allocation}, guidance: {guidance}, "
                        f"prompts: multiple, task: '{TASK}', generation: {{backend: local, max_new_tokens: 64, "
                        "temperature: 0.7, batch_size: 16}}")
        started = time.perf_counter()
        s = run_experiment(load_config(demo_config_path(), sets), loaded=loaded, progress=False)
        run = out / arm.replace("/", "-")
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        report = json.loads((run / "data_report.json").read_text())
        gc = [r for r in report["steps"] if r["step"] == "synth.fedgc"]
        results[arm] = {"exact_match": 100 * s["final"]["global"]["exact_match"],
                        "generated_kept": sum(r["kept"] for r in gc), "generated_made": sum(r["generated"] for r in gc),
                        "share": sum(r["generated_share"] for r in gc) / len(gc) if gc else 0.0,
                        "drift": sum(r.get("drift", 0.0) for r in rows) / len(rows),
                        "train_loss": rows[-1]["train_loss"], "seconds": time.perf_counter() - started}
        print(arm, results[arm], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| arm (allocation/guidance) | exact match % | generated kept / made | generated share | mean drift | "
          "last train loss | s |")
    print("|---|---|---|---|---|---|---|")
    for arm, r in results.items():
        print(f"| {arm} | {r['exact_match']:.1f} | {r['generated_kept']} / {r['generated_made']} | {r['share']:.2f} | "
              f"{r['drift']:.3f} | {r['train_loss']:.3f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
