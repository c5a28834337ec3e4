"""The evaluation suite on the built-in model: base vs federated, and what each evaluation costs.

Usage: python benchmarks/evaluation.py [--gsm8k 20] [--hh 40] [--rounds 6] [--out DIR] [--skip-local]

Trains the demo recipe (SmolLM2-135M-Instruct, 4 clients, FedAvg) with per-client evaluation and
these tasks at its final evaluation, and scores the base model (adapter off) on the same:
  - the suite's exact match (teacher-forced, the run's own metric) and, per client, the spread;
  - GSM8K test items from ../shared/data/gsm8k (generation + last-number extraction), natively
    and through lm-evaluation-harness's equivalent task (item-by-item agreement printed);
  - multiple choice: the suite's questions with four same-category answers as choices (acc,
    acc_norm; chance 25%), and HH-RLHF harmless pairs from ../shared/data (chosen vs rejected
    final reply, order alternated);
  - calibration (when the calibration task is registered): CONQORD-style verbalized and
    token-probability confidence on the suite's questions, ECE;
and, with a local-only run (unless --skip-local), each client's gain from federating.
Prints markdown tables: figures base / federated, the difference, seconds per task.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

from common import machine

from fedtune.commands.demo import demo_config_path
from fedtune.commands.evaluate import evaluate_target
from fedtune.config import load_config
from fedtune.data.formats import to_record
from fedtune.data.suite import build_suite
from fedtune.engine.runner import run_experiment
from fedtune.eval.fairness import gain_over_local
from fedtune.eval.tasks import TASKS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def suite_choices(cfg, path: Path, seed: int = 0) -> int:
    """The suite's global test questions as 4-way multiple choice (distractors: other answers of
    the same category)."""
    data = build_suite(cfg.data.suite, cfg.federation.num_clients, cfg.seed, kind="sft")
    items = [(r["messages"][-2]["content"], r["messages"][-1]["content"], r.get("category", "")) for r in data.global_test]
    rng = random.Random(seed)
    rows = []
    for q, a, cat in items:
        others = sorted({x for _, x, c in items if c == cat and x != a})
        if len(others) < 3:
            continue
        choices = [a, *rng.sample(others, 3)]
        rng.shuffle(choices)
        rows.append({"question": q, "choices": choices, "answer": choices.index(a)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def hh_choices(path: Path, n: int) -> int:
    """HH-RLHF harmless test pairs: the dialogue so far, then the chosen and the rejected final
    reply as the two choices (the chosen one first on even items, second on odd ones)."""
    rows = []
    with gzip.open(SHARED / "hh-rlhf-harmless" / "test.jsonl.gz", "rt") as f:
        for i, line in enumerate(f):
            if len(rows) == n:
                break
            rec = to_record(json.loads(line), "hh-rlhf", "preference", f"hh-rlhf test:{i + 1}")
            question = "\n".join(f"{m['role']}: {m['content']}" for m in rec["prompt"]) if len(rec["prompt"]) > 1 \
                else rec["prompt"][0]["content"]
            pair = [rec["chosen"], rec["rejected"]]
            if pair[0] == pair[1]:
                continue
            if len(rows) % 2:
                pair.reverse()
            rows.append({"question": question, "choices": pair, "answer": pair.index(rec["chosen"])})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def tasks(out: Path, gsm8k: int) -> list[dict]:
    gsm = {"type": "generation", "path": str(SHARED / "gsm8k" / "test.jsonl"), "limit": gsm8k, "extract": "last_number",
           "generation": {"max_new_tokens": 160, "batch_size": 1, "cache": False}}
    listed = [{**gsm, "name": "gsm8k_native"}, {**gsm, "name": "gsm8k_lm_eval", "engine": "lm_eval"},
              {"type": "multiple_choice", "path": str(out / "suite_mc.jsonl"), "name": "suite_mc"},
              {"type": "multiple_choice", "path": str(out / "hh_mc.jsonl"), "name": "hh_rlhf_mc"}]
    if "calibration" in TASKS:
        listed.append({"type": "calibration", "path": "suite", "name": "suite_calibration", "extract": "none",
                       "limit": 48})
    return listed


def agreement(items_dir: Path) -> tuple[int, int]:
    """Items where native and lm-eval GSM8K gave the same text and verdict at the last evaluation."""
    def read(name: str) -> list[dict]:
        last = max((items_dir / name).glob("*.jsonl"), key=lambda f: f.stat().st_mtime)
        return [json.loads(x) for x in last.read_text().splitlines()]

    native, harness = read("gsm8k_native"), read("gsm8k_lm_eval")
    same = sum(a["answer"] == b["answer"] and a["correct"] == b["correct"] for a, b in zip(native, harness))
    return same, len(native)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gsm8k", type=int, default=20)
    p.add_argument("--hh", type=int, default=40)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--out", type=Path, default=Path("runs/bench-eval"))
    p.add_argument("--skip-local", action="store_true")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    base_cfg = load_config(demo_config_path(), [f"federation.rounds={a.rounds}"])
    print(f"suite MC items: {suite_choices(base_cfg, a.out / 'suite_mc.jsonl')}, HH-RLHF MC items: "
          f"{hh_choices(a.out / 'hh_mc.jsonl', a.hh)}")
    listed = tasks(a.out, a.gsm8k)
    sets = [f"federation.rounds={a.rounds}", "eval.per_client=true", f"eval.tasks={json.dumps(listed)}"]

    t = time.perf_counter()
    fed = run_experiment(load_config(demo_config_path(), [*sets, f"output.dir={a.out / 'fedavg'}"]))
    print(f"federated run: {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    base = evaluate_target(demo_config_path(), None, True, sets)
    print(f"base evaluation: {time.perf_counter() - t:.0f} s")

    final = fed["final"]
    print("\n| figure | base | federated | difference |\n|---|---|---|---|")
    rows = [("suite exact match %", base["sets"]["global"]["exact_match"], final["global"]["exact_match"])]
    for label, figures in final["tasks"].items():
        for key, value in figures.items():
            if key in ("n", "seconds", "tokens") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            rows.append((f"{label} {key}", base["tasks"][label].get(key), value))
    for name, b, f in rows:
        both = isinstance(b, (int, float)) and isinstance(f, (int, float))
        print(f"| {name} | {b:.4g} | {f:.4g} | {f - b:+.4g} |" if both else f"| {name} | {b} | {f} | — |")
    print("\n| task | items | seconds (base) | seconds (federated) |\n|---|---|---|---|")
    for label, figures in final["tasks"].items():
        print(f"| {label} | {figures['n']} | {base['tasks'][label]['seconds']:.1f} | {figures['seconds']:.1f} |")
    same, n = agreement(a.out / "fedavg" / "eval")
    print(f"\nGSM8K native vs lm-eval (federated model): {same}/{n} items identical (text and verdict)")
    fair = final["fairness"]["exact_match"]
    print(f"fairness (federated, exact match on each client's own test split): mean {100 * fair['mean']:.1f}%, "
          f"worst {100 * fair['worst']:.1f}% (client {fair['worst_client']}), best {100 * fair['best']:.1f}%, "
          f"spread {100 * fair['spread']:.1f} points; base model: "
          f"{100 * base['fairness']['exact_match']['mean']:.1f}% mean")
    if not a.skip_local:
        local = run_experiment(load_config(demo_config_path(), [f"federation.rounds={a.rounds}", "eval.per_client=true",
                                                                "algorithm.name=local", f"output.dir={a.out / 'local'}"]))
        gain = gain_over_local(final["clients"], local["final"]["clients"])
        print("gain over local-only per client (exact match points): "
              + ", ".join(f"client {c} {100 * g:+.1f}" for c, g in gain["per_client"].items())
              + f"; mean {100 * gain['mean']:+.1f}, clients worse off: {gain['clients_worse_off']}")


if __name__ == "__main__":
    main()
