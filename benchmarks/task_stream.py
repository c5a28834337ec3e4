"""Lifelong clients: how much of each finished task do gossiping clients forget under a task
stream, with and without a replay memory?

Usage: python benchmarks/task_stream.py [--model smollm2-135m-instruct] [--clients 4]
           [--rounds-per-task 2] [--steps 5] [--replays 0,8] [--graph learned] [--out DIR]

The built-in suite with three rules that every client holds (Dirichlet mixture, concentration 5)
and two people's facts per client; each client meets `rule:echo`, `rule:bracket`, `rule:suffix`
and then its facts, `--rounds-per-task` rounds each, on a decentralized topology (`--graph`),
evaluated on its own test split every round. One run per replay size (0 = no memory); same seed,
data and model otherwise. Per run: the mean forgetting over clients' finished tasks (best −
final exact match, percentage points), the mean final exact match on past tasks, and on the
current (last) task. Per-run figures go to DIR/results.json.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import load_model

TASKS = ["rule:echo", "rule:bracket", "rule:suffix", "fact:*"]


def main():
    p = suite_arguments(__doc__.splitlines()[0], steps=5)
    p.add_argument("--rounds-per-task", type=int, default=2)
    p.add_argument("--replays", default="0,8", help="replay buffer sizes to compare (0 = no memory)")
    p.add_argument("--graph", default="learned")
    p.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="task-stream-"))
    rounds = args.rounds_per_task * len(TASKS)
    base = [f"model.name={args.model}", *suite_grid(args.clients, rounds, args.steps, "echo,bracket,suffix"),
            "data.suite.rule_concentration=5.0", "train.lr=3e-3", "eval.every=1", "eval.per_client=true",
            "topology.mode=decentralized", f"topology.graph={args.graph}",
            f"data.schedule.tasks=[{','.join(TASKS)}]", f"data.schedule.rounds_per_task={args.rounds_per_task}",
            *args.set]
    loaded = load_model(args.model)
    results = {}
    for replay in [int(x) for x in args.replays.split(",")]:
        cfg = load_config(demo_config_path(), [*base, f"data.schedule.replay={replay}",
                                               f"output.dir={out / f'replay_{replay}'}", f"name=replay-{replay}"])
        started = time.perf_counter()
        stream = run_experiment(cfg, loaded=loaded, progress=False)["task_stream"]
        current = [t["final"] for tasks in stream["clients"].values() for t in tasks if "forgetting" not in t]
        results[replay] = {"mean_forgetting": 100 * stream["mean_forgetting"],
                           "final_on_past_tasks": 100 * stream["mean_final_on_past_tasks"],
                           "final_on_current_task": 100 * statistics.fmean(current),
                           "per_client": stream["clients"], "seconds": time.perf_counter() - started}
        r = results[replay]
        print(f"replay {replay}: forgetting {r['mean_forgetting']:+.1f} pts, past {r['final_on_past_tasks']:.1f}, "
              f"current {r['final_on_current_task']:.1f}, {r['seconds']:.0f}s", flush=True)
        (out / "results.json").write_text(json.dumps({"overrides": base, "results": results}, indent=2))
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print(f"{args.clients} clients, tasks {' → '.join(TASKS)}, {args.rounds_per_task} rounds each, "
          f"gossip over the {args.graph} graph\n")
    print("| memory | mean forgetting (pts) | final EM on past tasks % | final EM on current task % | seconds |")
    print("|---|---|---|---|---|")
    for replay, r in results.items():
        memory = f"replay buffer of {replay}" if replay else "none"
        print(f"| {memory} | {r['mean_forgetting']:+.1f} | {r['final_on_past_tasks']:.1f} | "
              f"{r['final_on_current_task']:.1f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
