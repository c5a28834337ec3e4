"""Every FL algorithm on the built-in suite, same model, data, rounds and steps, over seeds.

Usage: python benchmarks/algorithms.py [--rounds 4] [--steps 3] [--seeds 0,1,2] [--only fedavg,scaffold]
           [--row "fedadam η=1e-3=algorithm.name=fedadam;algorithm.eta=1e-3"] [--json FILE]
Non-IID split: each client holds its own facts and one skill rule (pathological). Every row runs
once per seed (the seed draws the suite, the adapter's init and the batches), one run at a time;
the table gives mean ± 95% interval of the final global exact match, test loss, seconds and MB
communicated, including the local-only and centralized bounds, then each row's difference from
``--versus`` (default local) paired by seed. ``--row NAME=OVERRIDES`` adds a
row of its own (``;``-separated ``--set`` overrides), for testing a hypothesis beside the
defaults. The per-seed values go to the JSON (default algorithms.json next to this script);
a rerun with the same JSON skips the runs it holds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from common import machine
from seeds import markdown, paired_markdown, run_rows

from fedtune.algorithms import ALGORITHMS
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.eval.slices import slice_means
from fedtune.models.loader import load_model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", default="", help="comma-separated subset of algorithms (none: every one)")
    p.add_argument("--row", action="append", default=[], help="NAME=OVERRIDE;OVERRIDE… an extra row")
    p.add_argument("--set", action="append", default=[], help="overrides for every row")
    p.add_argument("--versus", default="local", help="the row every other is compared with, paired by seed")
    p.add_argument("--json", type=Path, default=Path(__file__).with_name("algorithms.json"))
    args = p.parse_args()
    only = [a for a in args.only.split(",") if a]
    rows = {name: [f"algorithm.name={name}"] for name in ALGORITHMS.names() if not args.row and not only or name in only}
    for spec in args.row:
        name, _, overrides = spec.partition("=")
        rows[name] = [o for o in overrides.split(";") if o]
    out = Path(tempfile.mkdtemp())
    loaded = {}

    def runner(name: str, overrides: list[str]):
        def run(seed: int) -> dict:
            cfg = load_config(demo_config_path(), [f"federation.rounds={args.rounds}", f"train.steps={args.steps}",
                                                   f"seed={seed}", *args.set, *overrides,
                                                   f"output.dir={out / name / str(seed)}"])
            if "model" not in loaded:
                loaded["model"] = load_model(cfg.model.name)
            s = run_experiment(cfg, loaded=loaded["model"], progress=False)
            g = s["final"]["global"]
            slices = {k: 100 * v for k, v in slice_means(g["by_category"]).items() if v is not None}
            return {"exact_match": 100 * g["exact_match"], **slices, "loss": g["loss"], "seconds": s["seconds"],
                    "mb": s["bytes_total"] / 1e6}
        return run

    command = "python benchmarks/algorithms.py " + shlex.join(sys.argv[1:])
    result = run_rows({name: runner(name, o) for name, o in rows.items()},
                      [int(s) for s in args.seeds.split(",")], args.json, command)
    print(f"\nmachine: {machine()}\n")
    metrics = [("exact_match", "exact match %", 1), ("facts", "facts %", 1), ("skills", "skills %", 1),
               ("loss", "test loss", 3)]
    print(markdown(result, [*metrics, ("seconds", "seconds", 0), ("mb", "MB communicated", 1)]))
    if args.versus in result["rows"]:
        others = [(row, args.versus) for row in result["rows"] if row != args.versus]
        print("\n" + paired_markdown(result, others, metrics))


if __name__ == "__main__":
    main()
