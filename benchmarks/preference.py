"""Federated DPO, β-DPO and Dr. DPO on the built-in preference suite with the built-in model, over seeds.

Usage: python benchmarks/preference.py [--rounds 2] [--steps 3] [--flip 0,0.3] [--seeds 0,1,2]
           [--objectives dpo,beta-dpo,dr-dpo] [--set KEY=VALUE] [--preference-set train.batch_size=16]
           [--row "beta-dpo rho 0=beta-dpo;train.objective.rho=0"] [--json FILE]
Per seed, first a federated SFT stage (the starting point and the DPO reference), then each
preference objective for each flip rate, starting from that SFT adapter. Prints mean ± 95%
interval over the seeds of the held-out choice accuracy (the policy gives the chosen answer the
higher likelihood), reward accuracy and margin against the SFT reference, and exact match — for
the SFT start and every objective — then each objective's difference from DPO at the same flip
rate, paired by seed. ``--set`` overrides apply to every run (e.g. the model);
``--preference-set`` ones to the preference runs only (e.g. a larger batch, more steps), so the
same script runs β-DPO's paper regime as far as a CPU allows; ``--row`` adds an objective with
its own overrides (β-DPO without its filter, say). β-DPO's margin statistics and filter act on
each micro-batch, so its batch is ``train.batch_size`` — ``train.grad_accum`` does not enlarge it. Per-seed values go to the JSON.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from common import machine
from seeds import markdown, paired_markdown, run_rows

from fedtune import adapter_state
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.run_dir import RunDir
from fedtune.engine.runner import run_experiment
from fedtune.engine.simulation import Simulation
from fedtune.engine.workspace import build_workspace
from fedtune.models.loader import load_model


def figures(g: dict) -> dict:
    return {"choice_accuracy": 100 * g["choice_accuracy"], "reward_accuracy": 100 * g["reward_accuracy"],
            "margin": g["margin"], "exact_match": 100 * g["exact_match"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--flip", default="0,0.3")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--objectives", default="dpo,beta-dpo,dr-dpo")
    p.add_argument("--set", action="append", default=[], help="overrides for every run")
    p.add_argument("--preference-set", action="append", default=[], help="overrides for the preference runs")
    p.add_argument("--row", action="append", default=[],
                   help="NAME=OBJECTIVE;OVERRIDE… an extra row per flip rate (e.g. β-DPO with rho=0)")
    p.add_argument("--json", type=Path, default=Path(__file__).with_name("preference.json"))
    args = p.parse_args()
    out = Path(tempfile.mkdtemp())
    base = [f"federation.rounds={args.rounds}", f"train.steps={args.steps}", *args.set]
    loaded, sft = {}, {}

    def sft_adapter(seed: int):
        """The seed's federated SFT stage (run once per seed): the start and the reference."""
        if seed not in sft:
            cfg = load_config(demo_config_path(), [*base, f"seed={seed}", f"output.dir={out / f'sft-{seed}'}"])
            loaded.setdefault("model", load_model(cfg.model.name))
            run_experiment(cfg, loaded=loaded["model"], progress=False)
            sft[seed] = adapter_state.load(out / f"sft-{seed}" / "adapter" / "adapter_model.safetensors")
        return sft[seed]

    def config(seed: int, flip: float, objective: str, name: str, extra: tuple[str, ...] = ()):
        return load_config(demo_config_path(), [
            *base, f"seed={seed}", f"data.suite.flip_rate={flip}", "train.objective.reference=start",
            "train.objective.beta=0.1", f"train.lr={args.lr}", "train.batch_size=4",
            f"train.objective.name={objective}", *args.preference_set, *extra,
            f"output.dir={out / f'{name}-{flip}-{seed}'}"])

    def start_row(flip: float):
        def run(seed: int) -> dict:  # the SFT adapter scored on the preference test set
            adapter = sft_adapter(seed)
            cfg = config(seed, flip, "dpo", "probe")
            ws = build_workspace(cfg, loaded["model"], initial_adapter=adapter)
            return figures(Simulation(cfg, ws, RunDir(cfg.run_dir())).evaluate(adapter)["global"])
        return run

    def objective_row(flip: float, objective: str, name: str, extra: tuple[str, ...] = ()):
        def run(seed: int) -> dict:
            adapter = sft_adapter(seed)
            s = run_experiment(config(seed, flip, objective, name, extra), loaded=loaded["model"], progress=False,
                               initial_adapter=adapter)
            return figures(s["final"]["global"])
        return run

    rows = {}
    for flip in [float(f) for f in args.flip.split(",")]:
        rows[f"SFT start, flip {flip}"] = start_row(flip)
        for objective in [o for o in args.objectives.split(",") if o]:
            rows[f"{objective}, flip {flip}"] = objective_row(flip, objective, objective)
        for spec in args.row:
            name, _, rest = spec.partition("=")
            objective, *extra = rest.split(";")
            rows[f"{name}, flip {flip}"] = objective_row(flip, objective, name.replace(" ", "_"), tuple(extra))
    command = "python benchmarks/preference.py " + shlex.join(sys.argv[1:])
    result = run_rows(rows, [int(s) for s in args.seeds.split(",")], args.json, command)
    print(f"\nmachine: {machine()}\n")
    metrics = [("choice_accuracy", "choice accuracy %", 1), ("reward_accuracy", "reward accuracy %", 1),
               ("margin", "margin", 3), ("exact_match", "exact match %", 1)]
    print(markdown(result, metrics))
    # Paired by seed: every objective against DPO at the same flip rate (same SFT start and pairs)
    dpo_at = {row: f"dpo, flip {row.rsplit(' ', 1)[1]}" for row in result["rows"]}  # "…, flip F" → DPO's row
    pairs = [(row, dpo) for row, dpo in dpo_at.items()
             if not row.startswith(("SFT start", "dpo,")) and dpo in result["rows"]]
    if pairs:
        print("\n" + paired_markdown(result, pairs, metrics))


if __name__ == "__main__":
    main()
