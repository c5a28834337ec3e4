"""Data-quality control on mixed-quality clients (FedDQC and its baselines) on the built-in suite
and model.

Usage: python benchmarks/quality.py [--model smollm2-135m-instruct] [--clients 4] [--noise 0,0.3,0.5,0]
           [--rounds 6] [--steps 4] [--settings none,random,ifd,loss,ira,ira-staged] [--out DIR]

Every run: the same seed and data, where ``--noise`` is each client's share of corrupted responses
(the suite replaces them with another record's). Settings: ``none`` (no control), ``random``,
``ifd``, ``loss``, ``ira`` (filters at select_rate 0.5, training on all kept data every round) and
``ira-staged`` (FedDQC: the IRA filter and the easy→hard schedule over 3 stages). Prints a markdown
table: global exact match, the scoring seconds as a share of the run's, and the mean score of the
kept examples on the noisy clients against the clean ones.
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


def quality(setting: str) -> dict | None:
    if setting == "none":
        return None
    score, _, staged = setting.partition("-")
    return {"score": score, "select_rate": 0.5, "order": "easy_to_hard" if staged else "none", "stages": 3}


def main():
    p = suite_arguments(__doc__.splitlines()[0], rounds=6, steps=4)
    p.add_argument("--noise", default="0,0.3,0.5,0")
    p.add_argument("--settings", default="none,random,ifd,loss,ira,ira-staged")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="quality-"))
    noise = [float(x) for x in args.noise.split(",")]
    base = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            "train.lr=3e-3", "eval.every=0", f"data.suite.noise_rate={json.dumps(noise)}"]
    loaded = load_model(args.model)
    results = {}
    for setting in args.settings.split(","):
        run_dir = out / setting
        sets = [*base, f"output.dir={run_dir}", f"name={setting}"]
        if (q := quality(setting)) is not None:
            sets.append(f"quality={json.dumps(q)}")
        started = time.perf_counter()
        s = run_experiment(load_config(demo_config_path(), sets), loaded=loaded, progress=False)
        seconds = time.perf_counter() - started
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        scoring = sum(m.get("seconds_scoring", 0.0) for r in rows for m in r["train"].values())
        per_client = s["data"].get("quality", {})
        noisy = [m["quality_score_mean"] for c, m in per_client.items() if noise[int(c)] > 0]
        clean = [m["quality_score_mean"] for c, m in per_client.items() if noise[int(c)] == 0]
        results[setting] = {"exact_match": 100 * s["final"]["global"]["exact_match"], "seconds": seconds,
                            "scoring_share": scoring / seconds,
                            "score_noisy": sum(noisy) / len(noisy) if noisy else None,
                            "score_clean": sum(clean) / len(clean) if clean else None}
        print(f"{setting}: {results[setting]}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| setting | exact match % | scoring share of the run | mean score, noisy clients / clean | seconds |")
    print("|---|---|---|---|---|")
    for setting, r in results.items():
        scores = (f"{r['score_noisy']:.3f} / {r['score_clean']:.3f}" if r["score_noisy"] is not None
                  and r["score_clean"] is not None else "—")
        print(f"| {setting} | {r['exact_match']:.1f} | {100 * r['scoring_share']:.1f}% | {scores} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
