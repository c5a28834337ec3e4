"""The safety attack on federated instruction tuning and its post-hoc defense (Ye et al., ICLR 2025)
on the built-in suite and model.

Usage: python benchmarks/safety.py [--model smollm2-135m-instruct] [--clients 10] [--malicious 2,3] [--rounds 3] [--steps 4]
           [--reducers mean,median,krum,trimmed_mean] [--defense-steps 10,30] [--out DIR]

Runs, all with the same seed and data (the suite with a forbidden topic; malicious clients hold
only forbidden-topic questions answered instead of refused): no attack with FedAvg; for each
malicious count, the attack under each reducer. Then the post-hoc defense at Levels 1–3 and each
step count, applied to the attacked FedAvg run's final global adapter by the same
``PosthocDefense`` a run calls after its last round (so one FL run serves every defense cell).
Level 1: refusals on fresh forbidden-topic prompts + the suite's public skill examples (files);
Level 2: SmolLM2 itself with the adapter off writes the responses; Level 3: the attacked global model.
Prints the harmless rate (refusal keywords on the suite's forbidden-topic test prompts), exact match
on the rest (helpful EM) and the seconds spent generating, as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import machine, suite_grid

from fedtune.client.state_store import ClientStateStore
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.data.suite import REFUSAL, forbidden_prompts, public_skill_examples
from fedtune.defenses import PosthocDefense
from fedtune.engine.run_dir import RunDir
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.eval.evaluator import Evaluator
from fedtune.models.loader import load_model

TOPIC = "password"


def level1_files(out: Path, cfg) -> tuple[str, str]:
    """The server's Level-1 data: refusals on fresh forbidden-topic prompts; public skill examples."""
    aligned, helpful = out / "level1_aligned.jsonl", out / "level1_helpful.jsonl"
    aligned.write_text("".join(json.dumps({"instruction": q, "output": REFUSAL}) + "\n"
                               for q in forbidden_prompts(TOPIC, 32, seed=1000)))
    records = public_skill_examples(cfg.data.suite, cfg.federation.num_clients, cfg.seed, per_rule=7)
    helpful.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(aligned), str(helpful)


def scores(evaluation: dict) -> dict:
    g = evaluation["global"]
    return {"harmless": 100 * g["harmless_rate"], "helpful": 100 * g["helpful_exact_match"],
            "seconds_generating_eval": g["seconds_generating"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--malicious", default="2,3")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--reducers", default="mean,median,krum,trimmed_mean")
    p.add_argument("--defense-steps", default="10,30")
    p.add_argument("--model", default="smollm2-135m-instruct")  # tiny-random: a smoke test of the script
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="safety-"))
    out.mkdir(parents=True, exist_ok=True)
    n = args.clients
    base = [f"model.name={args.model}", *suite_grid(n, args.rounds, args.steps),
            f"data.suite.forbidden_topic={TOPIC}", "eval.every=0"]
    loaded = load_model(args.model)
    results = {}

    def run(label: str, sets: list[str]):
        run_dir = out / label
        cfg = load_config(demo_config_path(), [*base, *sets, f"output.dir={run_dir}", f"name={label}"])
        s = run_experiment(cfg, loaded=loaded, progress=False)
        results[label] = {**scores(s["final"]), "seconds_run": s["seconds"]}
        print(f"{label}: {results[label]}", flush=True)
        return cfg

    run("clean/mean", [])
    for m in [int(x) for x in args.malicious.split(",")]:
        ids = json.dumps(list(range(n - m, n)))  # the last m clients: every count keeps the same benign ones
        attacked = None
        for reducer in args.reducers.split(","):
            spec = {"name": reducer}
            if reducer in ("median", "krum"):
                spec["f"] = min(m, (n - 3) // 2)
            if reducer == "trimmed_mean":
                spec["beta"] = m / n
            cfg = run(f"attack{m}/{reducer}", [f"data.suite.malicious_clients={ids}",
                                               f"aggregation.reducer={json.dumps(spec)}"])
            if reducer == "mean" or attacked is None:
                attacked = cfg  # FedAvg's run (else the first reducer's): the defenses start from it
        # the post-hoc defense on the attacked FedAvg run's final adapter
        last, adapter, _, _ = RunDir(attacked.run_dir()).load_checkpoint()
        aligned, helpful = level1_files(out, attacked)
        ws = build_workspace(attacked, loaded)
        for level in (1, 2, 3):
            for steps in [int(x) for x in args.defense_steps.split(",")]:
                label = f"attack{m}/mean+defense L{level} {steps} steps"
                posthoc = {"level": level, "steps": steps, **({"aligned": aligned, "helpful": helpful} if level == 1 else {})}
                cfg = load_config(attacked.run_dir() / "config.yaml", [f"defense.posthoc={json.dumps(posthoc)}"])
                defense_dir = out / "defense" / f"attack{m}_L{level}_{steps}"
                defense = PosthocDefense(cfg, ws.model, ws.tokenizer, ClientStateStore(defense_dir / "store"), defense_dir)
                defended, report = defense.apply(last, adapter)
                results[label] = {**scores(Evaluator(cfg, ws, None).evaluate(defended)),
                                  "seconds_generating_defense": report.get("seconds_generating", 0.0),
                                  "seconds_defense": report.get("seconds", 0.0), "pairs": report.get("pairs_used"),
                                  "dropped_not_refusal": report.get("dropped_not_refusal", 0)}
                print(f"{label}: {results[label]}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| setting | harmless % | helpful EM % | s generating (defense data) | s generating (eval) |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['harmless']:.1f} | {r['helpful']:.1f} | {r.get('seconds_generating_defense', 0):.1f} "
              f"| {r['seconds_generating_eval']:.1f} |")


if __name__ == "__main__":
    main()
