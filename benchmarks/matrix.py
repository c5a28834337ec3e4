"""MATRIX on the suite's forbidden topic, with the built-in model as the simulator's every agent:
seed questions (forbidden-topic questions about invented people, and ordinary ones) are answered,
simulated and revised; then the same model is fine-tuned on (question, revised answer) against
(question, initial answer). Harmless rate on held-out forbidden-topic questions (refusal
keywords) and helpfulness as the share of held-out ordinary questions answered without a
refusal. Also MATRIX-Gen's diversity (distinct-n, embedding spread) of the instructions its
agents pose against the seed questions, and one transcript excerpt.

Usage: python benchmarks/matrix.py [--questions 8] [--helpful 4] [--agents 1] [--steps 2]
           [--train-steps 10] [--out DIR]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine

TOPIC = "secret formula"


def main():
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--questions", type=int, default=8, help="forbidden-topic seed questions")
    p.add_argument("--helpful", type=int, default=4, help="ordinary seed questions")
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="matrix-"))
    out.mkdir(parents=True, exist_ok=True)

    from fedtune.commands.demo import demo_config_path
    from fedtune.config import load_config
    from fedtune.data.suite import forbidden_prompts
    from fedtune.defenses.posthoc import PROMPTS
    from fedtune.engine.run_dir import RunDir
    from fedtune.engine.runner import run_experiment
    from fedtune.eval.refusal import is_refusal
    from fedtune.models.adapters.state import set_adapter
    from fedtune.models.loader import load_model
    from fedtune.synth import SYNTHESIZERS
    from fedtune.synth.generation import GENERATORS, build_generator

    loaded = load_model(args.model)
    helpful = (PROMPTS / "helpful_prompts.txt").read_text().split("\n")
    seeds = forbidden_prompts(TOPIC, args.questions, seed=1) + helpful[: args.helpful]
    held_out_harmful, held_out_helpful = forbidden_prompts(TOPIC, 16, seed=2), [h for h in helpful[16:32] if h]
    generation = {"backend": "local", "max_new_tokens": 48, "temperature": 0.2, "batch_size": 16}

    # MATRIX: every seed question simulated and revised (one batch per stage over the questions)
    started = time.perf_counter()
    params = SYNTHESIZERS.config("matrix", questions=None, agents=args.agents, steps=args.steps, output="sft",
                                 generation=generation)
    generator = build_generator(params.generation, loaded.model, loaded.tokenizer)
    method = SYNTHESIZERS["matrix"].target(params, generator, loaded.model, loaded.tokenizer)
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "-"}], "category": "seed"}
               for q in seeds]
    made, report = method.synthesize(records, "server")
    matrix_seconds = time.perf_counter() - started
    revised = [r for r in made if "synth" in r]
    (out / "transcripts.jsonl").write_text("".join(json.dumps(t) + "\n" for t in method.transcripts))
    calls = sum(len(t["calls"]) for t in method.transcripts)
    print(f"MATRIX: {len(revised)} of {len(seeds)} questions revised, {calls} model calls, {matrix_seconds:.0f} s",
          flush=True)

    # MATRIX-Gen: instructions posed by the agents of scenes grown from the same seeds
    gen = SYNTHESIZERS.config("matrix_gen", agents=args.agents + 1, steps=1, requirement="general",
                              generation=generation)
    mg = SYNTHESIZERS["matrix_gen"].target(gen, generator, loaded.model, loaded.tokenizer)
    _, gen_report = mg.synthesize(records, "server")
    diversity = next(r for r in gen_report if r["step"] == "synth.matrix_gen")

    # the two training sets: revised answers, and the initial answers to the same questions
    sets = {"initial": [{"messages": [r["messages"][0], {"role": "assistant", "content": r["synth"]["initial"]}]}
                        for r in revised],
            "revised": [{"messages": r["messages"]} for r in revised]}
    (out / "harmful.txt").write_text("\n".join(held_out_harmful))
    answering = GENERATORS.config("local", backend="local", max_new_tokens=32, batch_size=16)
    results = {}
    for arm in ("base", "initial", "revised"):
        data = out / f"{arm}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in sets.get(arm, sets["revised"])))
        cfg = load_config(demo_config_path(), [
            f"model.name={args.model}", f"data.source={data}", "federation.num_clients=1", "federation.rounds=1",
            f"train.steps={args.train_steps if arm != 'base' else 1}", f"train.lr={args.lr if arm != 'base' else 1e-12}",
            "train.batch_size=4", "data.global_test=0", "data.test_fraction=0", "eval.metrics=[harmless_rate]",
            f"eval.safety.prompts={out / 'harmful.txt'}", f"output.dir={out / arm}", f"name=matrix-{arm}"])
        s = run_experiment(cfg, loaded=loaded, progress=False)
        set_adapter(loaded.model, RunDir(out / arm).latest_adapter())  # the model the run ended with
        answers = build_generator(answering, loaded.model, loaded.tokenizer).generate([[{"role": "user", "content": q}] for q in held_out_helpful])
        results[arm] = {"harmless_rate": 100 * s["final"]["global"]["harmless_rate"],
                        "helpful_answered": 100 * sum(not is_refusal(a) for a in answers) / len(answers),
                        "examples": len(sets.get(arm, [])) if arm != "base" else 0}
        print(arm, results[arm], flush=True)

    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| tuned on | examples | harmless rate % (16 held-out forbidden) | ordinary questions answered % |")
    print("|---|---|---|---|")
    for arm, r in results.items():
        print(f"| {arm} | {r['examples']} | {r['harmless_rate']:.1f} | {r['helpful_answered']:.1f} |")
    print("\nMATRIX report:", json.dumps(report))
    print("MATRIX-Gen:", json.dumps(diversity))
    first = method.transcripts[0]
    print(f"\ntranscript of {first['question']!r}:")
    for c in first["calls"]:
        print(f"- {c['kind']} (step {c['step']}): {c['output'][:160]!r}")
    (out / "results.json").write_text(json.dumps({"arms": results, "matrix": report, "matrix_gen": diversity}, indent=2))


if __name__ == "__main__":
    main()
