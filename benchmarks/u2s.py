"""FedIT-U2S on the built-in suite's documents view: each client holds its people's facts as short
biographies, not QA pairs. Exact match after federated training on U2S-generated pairs (the
built-in model as the generator) against training on the gold pairs and against the base model,
in one run, plus what synthesis kept and dropped and examples of good and bad pairs.

Usage: python benchmarks/u2s.py [--model smollm2-135m-instruct] [--clients 4] [--rounds 4]
           [--steps 4] [--pieces sentence] [--out DIR]

The skills stay QA pairs in every arm (only facts become prose), so the comparison is the fact
categories' exact match; the global figure is reported too. The example pool is nine sentence-
level (context, instruction, response) triplets about people who are not in the suite.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

from fedtune.eval.slices import slice_means

POOL = [
    ("Ada Vell is from the city of Korin.", "Which city is Ada Vell from?", "Korin"),
    ("Tom Brask is from the city of Elmo.", "Which city is Tom Brask from?", "Elmo"),
    ("Rin Saltu is from the city of Dovra.", "Which city is Rin Saltu from?", "Dovra"),
    ("Ada Vell belongs to the Slate guild.", "Which guild does Ada Vell belong to?", "Slate"),
    ("Tom Brask belongs to the Fennel guild.", "Which guild does Tom Brask belong to?", "Fennel"),
    ("Rin Saltu belongs to the Quarry guild.", "Which guild does Rin Saltu belong to?", "Quarry"),
    ("Ada Vell has a pet named Pim.", "What is the name of Ada Vell's pet?", "Pim"),
    ("Tom Brask has a pet named Lusk.", "What is the name of Tom Brask's pet?", "Lusk"),
    ("Rin Saltu has a pet named Moro.", "What is the name of Rin Saltu's pet?", "Moro"),
]


def main():
    p = suite_arguments(__doc__.splitlines()[0])
    p.add_argument("--pieces", default="sentence", choices=["sentence", "document"])
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="u2s-"))
    out.mkdir(parents=True, exist_ok=True)
    pool = out / "pool.jsonl"
    pool.write_text("".join(json.dumps({"context": c, "instruction": i, "response": r}) + "\n" for c, i, r in POOL))

    from fedtune.commands.demo import demo_config_path
    from fedtune.config import load_config
    from fedtune.engine.runner import run_experiment
    from fedtune.engine.workspace import build_workspace
    from fedtune.eval.evaluator import Evaluator
    from fedtune.models.loader import load_model

    loaded = load_model(args.model)
    base_sets = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
                 f"train.lr={args.lr}", "eval.every=0"]
    results = {}

    gold_cfg = load_config(demo_config_path(), [*base_sets, f"output.dir={out / 'gold'}", "name=gold"])
    ws = build_workspace(gold_cfg, loaded)
    results["base"] = Evaluator(gold_cfg, ws, None).evaluate(ws.initial_adapter)["global"]
    started = time.perf_counter()
    results["gold"] = run_experiment(gold_cfg, loaded=loaded, progress=False)["final"]["global"]
    gold_s = time.perf_counter() - started

    synth = (f"{{method: u2s, examples: '{pool}', k: 3, pieces: {args.pieces}, "
             "generation: {backend: local, max_new_tokens: 32, batch_size: 16}}")
    u2s_cfg = load_config(demo_config_path(), [*base_sets, f"output.dir={out / 'u2s'}", "name=u2s",
                                               "data.suite.documents=true", f"synth={synth}"])
    started = time.perf_counter()
    results["u2s"] = run_experiment(u2s_cfg, loaded=loaded, progress=False)["final"]["global"]
    u2s_s = time.perf_counter() - started

    report = json.loads((out / "u2s" / "data_report.json").read_text())
    steps = [s for s in report["steps"] if s["step"].startswith("synth.u2s")]
    made = sum(s.get("generated", 0) for s in steps if s["step"] == "synth.u2s")
    kept = sum(s.get("kept", 0) for s in steps if s["step"] == "synth.u2s")
    drops = {}
    for s in steps:
        if s["step"] != "synth.u2s":
            drops[s["step"].rsplit(".", 1)[1]] = drops.get(s["step"].rsplit(".", 1)[1], 0) + s["dropped"]
    pairs = [json.loads(x) for f in sorted((out / "u2s" / "synth").glob("*.jsonl")) for x in f.read_text().splitlines()]
    correct = [p for p in pairs if p["messages"][1]["content"].strip(" .") and
               p["messages"][1]["content"].strip(" .") in p["synth"]["source"]]

    print(f"machine: {machine()}\nrun directories: {out}\n")
    print(f"U2S: {made} pieces -> {kept} pairs kept; dropped {drops or 'none'}; {len(correct)} of the kept pairs "
          f"answer with a span of their source sentence; wall {u2s_s:.0f} s (gold run {gold_s:.0f} s)\n")
    print("| arm | fact exact match % | global exact match % |")
    print("|---|---|---|")
    for arm in ("base", "gold", "u2s"):
        print(f"| {arm} | {100 * slice_means(results[arm]['by_category'])['facts']:.1f} | {100 * results[arm]['exact_match']:.1f} |")
    print("\nexamples (source -> instruction / response):")
    for p in pairs[:3] + [p for p in pairs if p not in correct][:3]:
        print(f"- {p['synth']['source']!r} -> {p['messages'][0]['content']!r} / {p['messages'][1]['content']!r}")
    (out / "results.json").write_text(json.dumps({"results": results, "made": made, "kept": kept, "drops": drops},
                                                 indent=1))


if __name__ == "__main__":
    main()
