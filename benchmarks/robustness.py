"""Byzantine attacks × robust aggregation rules on the built-in suite and model.

Usage: python benchmarks/robustness.py [--clients 10] [--rates 0.2,0.4] [--rounds 3] [--steps 2]
           [--reducers mean,median,...,dynamic,dynamic@2] [--attacks none,alie,...] [--out DIR]

Every cell is one federated run (FedAvg's server step over the chosen reducer) with the same
seed, data and attackers; it prints the final global exact match (%) per attack × reducer and
writes results.json, a comparison report (accuracy per round for every run) and, per rate, a
table of exact match with the mean harm in brackets (‖global update − benign mean‖ / ‖benign mean‖)
and the
worst case of every rule. Each robust rule assumes f = the number of attackers, capped at what
the rule tolerates for this many clients (Krum/median/trimmed mean: 2f + 2 < n; Bulyan: 4f + 3 ≤ n).
The cost of each reducer is ``benchmarks/reducer_cost.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import machine, suite_grid

from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import load_model
from fedtune.report.compare import write_comparison

POOL = ["krum", "median", "trimmed_mean", "bulyan"]


def assumed_f(reducer: str, attackers: int, n: int) -> int:
    """The f a rule is configured with: the true count, capped at what it tolerates for n."""
    if reducer == "bulyan":
        return max(0, min(attackers, (n - 3) // 4))
    return max(0, min(attackers, (n - 3) // 2))


def reducer_spec(name: str, attackers: int, n: int) -> dict:
    """The reducer config of a column; ``dynamic@S`` is the dynamic rule with draw seed S (the
    rules it draws over the rounds depend on it: several seeds estimate its expected damage)."""
    if name.split("@")[0] == "dynamic":
        seed = {"seed": int(name.split("@")[1])} if "@" in name else {}
        return {"name": "dynamic", "pool": [{"name": r, "f": assumed_f(r, attackers, n)} for r in POOL], **seed}
    if name in ("median", "trimmed_mean", "krum", "multi_krum", "bulyan"):
        return {"name": name, "f": assumed_f(name, attackers, n)}
    return {"name": name}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rates", default="0.2,0.4")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--reducers", default="mean,median,trimmed_mean,krum,bulyan,norm_bound,dynamic")
    p.add_argument("--attacks", default="none,sign_flip,alie,ipm,min_max,fang_krum,fang_trimmed_mean")
    p.add_argument("--set", action="append", default=[], help="extra config overrides")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="robustness-"))
    n = args.clients
    base = [*suite_grid(n, args.rounds, args.steps), *args.set]
    loaded = load_model("smollm2-135m-instruct")
    results, runs = {}, {}
    for rate in [float(r) for r in args.rates.split(",")]:
        attackers = max(1, round(rate * n))
        for attack in args.attacks.split(","):
            if attack == "none" and rate != float(args.rates.split(",")[0]):
                continue  # the clean runs do not depend on the rate
            for reducer in args.reducers.split(","):
                label = f"{attack}@{rate:.0%}/{reducer}" if attack != "none" else f"none/{reducer}"
                run_dir = out / label.replace("/", "_").replace("@", "_").replace("%", "")
                sets = [*base, f"output.dir={run_dir}", f"name={run_dir.name}",
                        f"aggregation.reducer={json.dumps(reducer_spec(reducer, attackers, n))}"]
                if attack != "none":
                    sets.append(f"attack={json.dumps({'method': attack, 'clients': rate})}")
                cfg = load_config(demo_config_path(), sets)
                started = time.perf_counter()
                s = run_experiment(cfg, loaded=loaded, progress=False)
                em = 100 * s["final"]["global"]["exact_match"]
                rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
                harms = [r["attack"]["distance_from_benign_mean"] / r["attack"]["benign_mean_norm"]
                         for r in rows if r.get("attack", {}).get("benign_mean_norm")]
                results[label] = {"exact_match": em, "seconds": time.perf_counter() - started,
                                  "harm": sum(harms) / len(harms) if harms else 0.0,
                                  "rules": [r.get("aggregation", {}).get("rule") for r in rows]}
                runs[label] = run_dir
                print(f"{label}: EM {em:.1f}  ({results[label]['seconds']:.0f}s)", flush=True)
                (out / "results.json").write_text(json.dumps(results, indent=2))
    write_comparison(out / "report.html", runs, "fedtune robustness: attack × aggregation rule")
    reducers = args.reducers.split(",")
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    for rate in [float(r) for r in args.rates.split(",")]:
        print(f"\n### {rate:.0%} attackers ({max(1, round(rate * n))} of {n})\n")
        print("| attack | " + " | ".join(reducers) + " |")
        print("|---|" + "---|" * len(reducers))
        attacks = [a for a in args.attacks.split(",")]
        worst = {r: 100.0 for r in reducers}
        for attack in attacks:
            cells = []
            for r in reducers:
                key = f"{attack}@{rate:.0%}/{r}" if attack != "none" else f"none/{r}"
                v = results.get(key, {}).get("exact_match")
                h = results.get(key, {}).get("harm")
                cells.append("—" if v is None else f"{v:.1f}" + (f" ({h:.2f})" if attack != "none" else ""))
                if v is not None and attack != "none":
                    worst[r] = min(worst[r], v)
            print(f"| {attack} | " + " | ".join(cells) + " |")
        print("| **worst case** | " + " | ".join(f"**{worst[r]:.1f}**" for r in reducers) + " |")


if __name__ == "__main__":
    main()
