"""Every adapter method on the built-in suite and model: global exact match, trainable
parameters, bytes per round, seconds per round and peak memory, one method per process.

Usage: python benchmarks/adapters.py [--methods lora,dora,ia3,prefix,prompt,p-tuning,offsite,offsite-kd,fedsp]
           [--model smollm2-135m-instruct] [--clients 4] [--rounds 4] [--steps 4] [--out DIR]
           [--owner-text ../shared/data/gsm8k/test.jsonl] [--distill-steps 100]

Every run: the same seed, data and clients; only ``model.adapter`` (and its learning rate)
differs. Methods that train a few vectors (IA³, soft prompts) get ``--vector-lr`` (default 3e-2),
the weight adapters (LoRA, DoRA) ``--lr`` (3e-3): the usual tenfold gap between them. Each method
runs in its own process, so "peak MB" is that process's maximum resident memory (model, data,
training and evaluation together).

Tuning without the model (``offsite``, docs/offsite.md): ``offsite`` is offsite-tuning's emulator
(2 bottom + 2 top adapter layers with LoRA, half the middle dropped), ``offsite-nodrop`` the
same adapter layers with nothing dropped (the full model as its own emulator: what the adapter
restriction alone costs), ``offsite-kd`` the same
emulator distilled for ``--distill-steps`` on the owner's text (GSM8K test questions: text the
clients never see), ``fedsp`` FedSP's auxiliary model (layer 0 shared to full depth, distilled the
same way) with a prefix. Their exact match is the plug-in's (the full model with the adapter); the
emulator's own is reported beside it, as FS-LLM does; the peak includes the owner's full model.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

VECTOR_METHODS = ("ia3", "prefix", "prompt", "p-tuning")
OWNER_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def variant(name: str, args) -> tuple[str, str | None]:
    """(model.adapter, offsite) of a benchmarked method: a plain adapter or a client model."""
    distill = (f"distill: {{source: '{args.owner_text}', steps: {args.distill_steps}, lr: 1e-4, batch_size: 4, "
               "max_length: 128}")
    return {"offsite": ("lora", "{method: emulator}"),
            "offsite-nodrop": ("lora", "{method: emulator, drop_ratio: 0.0}"),
            "offsite-kd": ("lora", f"{{method: emulator, {distill}}}"),
            "fedsp": ("prefix", f"{{method: fedsp, {distill}}}")}.get(name, (name, None))


def run_one(args) -> dict:
    """One method's run in this process; returns its figures."""
    from safetensors.torch import load_file

    from fedtune.commands.demo import demo_config_path
    from fedtune.config import load_config
    from fedtune.engine.runner import run_experiment
    from fedtune.models.loader import load_model

    adapter, offsite = variant(args.one, args)
    lr = args.vector_lr if args.one in VECTOR_METHODS else args.lr
    run_dir = args.out / args.one
    sets = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            f"train.lr={lr}", "eval.every=0", f"output.dir={run_dir}", f"name={args.one}",
            f"model.adapter={{method: {adapter}}}", *([f"offsite={offsite}"] if offsite else [])]
    started = time.perf_counter()
    s = run_experiment(load_config(demo_config_path(), sets), loaded=load_model(args.model), progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ckpt = run_dir / "checkpoints"
    state = load_file(str(ckpt / (ckpt / "LATEST").read_text().strip() / "global_adapter.safetensors"))
    own = s["final"].get("emulator")  # offsite-tuning: the emulator's own score beside the plug-in's
    return {"exact_match": 100 * s["final"]["global"]["exact_match"], "lr": lr,
            "client_model_em": 100 * own["exact_match"] if own else None,
            "distill_loss": s.get("offsite", {}).get("distill_loss"),
            "trainable": sum(t.numel() for t in state.values()),
            "mb_up_per_round": sum(r["bytes_up"] for r in rows) / len(rows) / 1e6,
            "seconds_per_round": sum(r["seconds_train"] for r in rows) / len(rows),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.perf_counter() - started}


def main():
    p = suite_arguments(__doc__.splitlines()[0])
    p.add_argument("--methods", default="lora,dora,ia3,prefix,prompt,p-tuning,offsite,offsite-kd,fedsp")
    p.add_argument("--owner-text", type=Path, default=OWNER_TEXT, help="the owner's distillation text")
    p.add_argument("--distill-steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--vector-lr", type=float, default=3e-2)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one method here
    args = p.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="adapters-"))
    if args.one:  # the child: one method, its figures as the last line
        print(json.dumps(run_one(args)))
        return
    results = {}
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--one", method, "--out", str(args.out), "--model", args.model,
               "--clients", str(args.clients), "--rounds", str(args.rounds), "--steps", str(args.steps),
               "--lr", str(args.lr), "--vector-lr", str(args.vector_lr), "--owner-text", str(args.owner_text),
               "--distill-steps", str(args.distill_steps)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{method}: {results[method]}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nmachine: {machine()}\nrun directories: {args.out}\n")
    print("| method | lr | exact match % | emulator's own % | trainable parameters | MB up / round | s / round | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for method, r in results.items():
        own = "" if r.get("client_model_em") is None else f"{r['client_model_em']:.1f}"
        print(f"| {method} | {r['lr']:g} | {r['exact_match']:.1f} | {own} | {r['trainable']:,} | "
              f"{r['mb_up_per_round']:.3f} | {r['seconds_per_round']:.1f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
