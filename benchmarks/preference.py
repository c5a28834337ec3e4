"""Federated DPO, β-DPO and Dr. DPO on the built-in preference suite with the built-in model.

Usage: python benchmarks/preference.py [--rounds 2] [--steps 3] [--flip 0,0.3]
First a federated SFT stage (the starting point), then each preference objective for each flip
rate, starting from the SFT adapter with it as the reference. Prints held-out choice accuracy
(the policy gives the chosen answer the higher likelihood), reward accuracy and margin against
the SFT reference, and exact match — for the SFT start and every DPO run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine

from fedtune import adapter_state
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.run_dir import RunDir
from fedtune.engine.runner import run_experiment
from fedtune.engine.simulation import Simulation
from fedtune.engine.workspace import build_workspace
from fedtune.models.loader import load_model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--flip", default="0,0.3")
    p.add_argument("--lr", type=float, default=5e-4)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp())
    base = [f"federation.rounds={args.rounds}", f"train.steps={args.steps}"]
    sft_cfg = load_config(demo_config_path(), [*base, f"output.dir={out / 'sft'}"])
    loaded = load_model(sft_cfg.model.name)
    run_experiment(sft_cfg, loaded=loaded, progress=False)
    sft_adapter = adapter_state.load(out / "sft" / "adapter" / "adapter_model.safetensors")

    rows = []
    for flip in [float(f) for f in args.flip.split(",")]:
        common = [*base, f"data.suite.flip_rate={flip}", "train.objective.reference=start", "train.objective.beta=0.1",
                  f"train.lr={args.lr}", "train.batch_size=4"]
        probe_cfg = load_config(demo_config_path(), [*common, "train.objective.name=dpo", f"output.dir={out / 'probe'}"])
        ws = build_workspace(probe_cfg, loaded, initial_adapter=sft_adapter)
        start = Simulation(probe_cfg, ws, RunDir(out / "probe")).evaluate(sft_adapter)["global"]
        rows.append(("SFT start", flip, start))
        for objective in ("dpo", "beta-dpo", "dr-dpo"):
            cfg = load_config(demo_config_path(), [*common, f"train.objective.name={objective}",
                                                   f"output.dir={out / f'{objective}-{flip}'}"])
            s = run_experiment(cfg, loaded=loaded, progress=False, initial_adapter=sft_adapter)
            rows.append((objective, flip, s["final"]["global"]))
            print(objective, flip, s["final"]["global"], flush=True)
    print(f"\nmachine: {machine()}\n")
    print("| objective | flip rate | choice accuracy % | reward accuracy % | margin | exact match % |")
    print("|---|---|---|---|---|---|")
    for name, flip, g in rows:
        print(f"| {name} | {flip} | {100 * g['choice_accuracy']:.1f} | {100 * g['reward_accuracy']:.1f} | "
              f"{g['margin']:.3f} | {100 * g['exact_match']:.1f} |")


if __name__ == "__main__":
    main()
