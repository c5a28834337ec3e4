"""KnowledgeSG on the built-in suite: one client holds the private facts (and planted canaries)
and trains under sample-level DP; the server synthesizes from the DP adapter and fine-tunes on
the result. Rows per ε: the DP model alone (the run's eval_before), the paper's baselines without
a professional (ICL generation, self-instruct) and KnowledgeSG (self-instruct and ICL prompting)
with, as the "professional", the same built-in model fine-tuned centrally on the client's data
without its canaries — a stand-in for the paper's domain model, which knows the domain but not
the secrets. Exact match on the client's test split and canary exposure of the server's final model.

Usage: python benchmarks/knowledgesg.py [--epsilons 8,20] [--arms icl,self_instruct,ksg,ksg-icl]
           [--n 48] [--rounds 3] [--steps 8] [--out DIR]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments

ARMS = {  # arm -> (prompting, with the professional)
    "icl": ("icl", False), "self_instruct": ("self_instruct", False),
    "ksg": ("self_instruct", True), "ksg-icl": ("icl", True),
}


def main():
    p = suite_arguments(__doc__.splitlines()[0], rounds=3, steps=8)
    p.add_argument("--epsilons", default="8,20")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--n", type=int, default=48, help="generation attempts at the server")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--server-steps", type=int, default=20)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="knowledgesg-"))

    from fedtune.commands.demo import demo_config_path
    from fedtune.config import load_config
    from fedtune.engine.runner import run_experiment
    from fedtune.models.loader import load_model

    loaded = load_model(args.model)
    base = [f"model.name={args.model}", "federation.num_clients=1", f"federation.rounds={args.rounds}",
            f"train.steps={args.steps}", "train.batch_size=4", f"train.lr={args.lr}", "eval.every=0",
            "data.suite.entities_per_client=8", "data.suite.skill_train_per_client=16", "data.suite.test_per_rule=6",
            "data.suite.rules=[echo,bracket]", "data.global_test=0"]
    canaries = "data.canaries=" + json.dumps({"clients": [0], "repeats": 10, "candidates": 200})
    metrics = "eval.metrics=[exact_match, canary_exposure]"

    def run(name: str, sets: list[str]) -> dict:
        started = time.perf_counter()
        s = run_experiment(load_config(demo_config_path(), [*base, *sets, f"output.dir={out / name}", f"name={name}"]),
                           loaded=loaded, progress=False)
        s["wall"] = time.perf_counter() - started
        return s

    # the professional: the same model trained centrally, without DP, on the facts (not the canaries)
    gold = run("professional", [])
    professional = {"backend": "local", "model": args.model, "adapter": str(out / "professional" / "adapter"),
                    "max_new_tokens": 16, "batch_size": 16}
    results = {"professional": {"exact_match": 100 * gold["final"]["global"]["exact_match"]}}
    print("professional", results["professional"], flush=True)
    for eps in args.epsilons.split(","):
        dp = f"privacy.sample_level={{target_epsilon: {eps}, clip_norm: 1.0}}"
        for arm in args.arms.split(","):
            prompting, pro = ARMS[arm]
            synth = {"method": "knowledgesg", "n": args.n, "prompting": prompting, "steps": args.server_steps,
                     "generation": {"backend": "local", "max_new_tokens": 64, "temperature": 0.7, "batch_size": 16},
                     "professional": professional if pro else None}
            s = run(f"eps{eps}-{arm}", [dp, canaries, metrics, f"synth={json.dumps(synth)}"])
            rows = [json.loads(x) for x in (out / f"eps{eps}-{arm}" / "metrics.jsonl").read_text().splitlines()]
            report, final = rows[-1]["synth"], s["final"]["global"]
            before = report["eval_before"]["global"]
            results.setdefault(f"ε={eps} DP model alone", {
                "exact_match": 100 * before["exact_match"], "exposure": before["canary_exposure"],
                "epsilon": s["synth"]["privacy"]["sample_level"]["epsilon"]})
            results[f"ε={eps} {arm}"] = {
                "exact_match": 100 * final["exact_match"], "exposure": final["canary_exposure"],
                "kept": report["kept"], "attempts": report["attempts"], "dropped": report["dropped"],
                "seconds": s["wall"]}
            print(f"ε={eps} {arm}", results[f"ε={eps} {arm}"], flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| row | exact match % | canary exposure (bits) | synthetic pairs kept / attempts | dropped | seconds |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        kept = f"{r['kept']} / {r['attempts']}" if "kept" in r else "—"
        dropped = ", ".join(f"{k} {v}" for k, v in r.get("dropped", {}).items()) or "—"
        exposure = f"{r['exposure']:.2f}" if "exposure" in r else "—"
        seconds = f"{r['seconds']:.0f}" if "seconds" in r else "—"
        print(f"| {label} | {r['exact_match']:.1f} | {exposure} | {kept} | {dropped} | {seconds} |")


if __name__ == "__main__":
    main()
