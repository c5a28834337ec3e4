"""Where `fedtune run`'s peak memory goes, on the speed-and-memory issue's job.

The job (benchmarks/gsm8k_job.yaml): SmolLM2-135M-Instruct, LoRA r16 on q_proj/v_proj, up to
2000 GSM8K records from ../shared/data (train split where present, else test) in the Alpaca
template, FedAvg, 4 clients, 2 per round, 3 rounds × 5 steps × batch 4, max length 256.

Usage: python benchmarks/memory.py [--set KEY=VALUE ...]
1. ``fedtune run`` on the job, as a user would run it, in a child process: its peak RSS (from
   the kernel's rusage of that child) and wall time, with gradient checkpointing off and on.
2. The breakdown, in a fresh child: RSS after the imports, after loading the model, after the
   data, then one training micro-batch with every tensor autograd saves for backward counted
   (by storage, so shared ones count once), split into the bf16 copies of weights autocast makes
   and the activations proper, and the peak RSS of the step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import GSM8K_TRAIN as GSM8K
from common import machine

JOB = Path(__file__).with_name("gsm8k_job.yaml")
MB = 2**20


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def run_child(argv: list[str]) -> tuple[float, float, str]:
    """(peak RSS MB, wall s, stdout) of one child process, its rusage read with wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return usage.ru_maxrss * 1024 / MB, time.perf_counter() - started, out


def breakdown(overrides: list[str]) -> dict:
    """The phases of one client's training, in this process (see the module docstring)."""
    phases = {"imports": rss_mb()}
    import torch

    from fedtune.client.state_store import ClientStateStore
    from fedtune.client.trainer import LocalData, LocalTrainer
    from fedtune.config import load_config
    from fedtune.data.build import build_federated_data
    from fedtune.data.tokenize import tokenize_sft
    from fedtune.models.adapters import attach_adapter
    from fedtune.models.adapters.state import get_adapter
    from fedtune.models.loader import load_base
    from fedtune.protocol import ClientInstruction

    phases["imports"] = rss_mb()
    cfg = load_config(JOB, [f"data.source={GSM8K}", *overrides])
    loaded = load_base(cfg.model)
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    phases["model loaded"] = rss_mb()
    data = build_federated_data(cfg, "sft")
    model = attach_adapter(loaded.model, cfg.model.adapter)
    tokens = tokenize_sft(data.clients[0].train, loaded.tokenizer, cfg.data.max_length, cfg.data.system_prompt)
    phases["data tokenized"] = rss_mb()

    # One micro-batch's saved tensors: autograd's pack hook sees each, once per use
    trainer = LocalTrainer(model, loaded.tokenizer, cfg.train, ClientStateStore(tempfile.mkdtemp()))
    weight_shapes = {tuple(p.shape) for p in loaded.model.parameters() if p.dim() == 2}
    seen, saved = set(), {"weight copies": 0, "activations": 0}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            is_weight = t.dim() == 2 and tuple(t.shape) in weight_shapes and t.dtype != torch.float32
            saved["weight copies" if is_weight else "activations"] += storage.nbytes()
        return t

    model.train()
    idx = list(range(cfg.train.batch_size))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), trainer.precision.autocast():
        loss, _ = trainer.objective.loss(model, tokens, idx, trainer.pad_id)
    loss.backward()
    model.zero_grad(set_to_none=True)
    step_tokens = sum(len(tokens.input_ids[i]) for i in idx)
    phases["one micro-batch (peak)"] = peak_mb()
    trainer.train(ClientInstruction(0, 0, 1e-3, cfg.train.steps), get_adapter(model), LocalData(0, tokens))
    phases["one round (peak)"] = peak_mb()
    return {"phases": phases, "weights_mb": weights / MB, "saved_mb": {k: v / MB for k, v in saved.items()},
            "precision": str(trainer.precision.dtype), "step_tokens": step_tokens}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], help="overrides of the job (KEY=VALUE)")
    p.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args()
    if args.breakdown:
        print(json.dumps(breakdown(args.set)))
        return

    fedtune = str(Path(sys.executable).with_name("fedtune"))
    runs = {}
    for label, extra in (("gradient checkpointing off", []), ("gradient checkpointing on",
                                                              ["train.gradient_checkpointing=true"])):
        out = tempfile.mkdtemp()
        argv = [fedtune, "run", str(JOB), "--output", out,
                *[a for o in [f"data.source={GSM8K}", *args.set, *extra] for a in ("--set", o)]]
        runs[label] = run_child(argv)[:2]
        print(f"fedtune run, {label}: peak RSS {runs[label][0]:.0f} MB, {runs[label][1]:.0f} s", flush=True)
    _, _, out = run_child([sys.executable, __file__, "--breakdown", *[a for o in args.set for a in ("--set", o)]])
    parts = json.loads(out.strip().splitlines()[-1])

    print(f"\nmachine: {machine()}; job: {GSM8K.name}, precision {parts['precision']}\n")
    print("| `fedtune run` on the job | peak RSS MB | wall s |\n|---|---|---|")
    for label, (peak, wall) in runs.items():
        print(f"| {label} | {peak:.0f} | {wall:.0f} |")
    print("\n| one client's training, in a fresh process | RSS MB |\n|---|---|")
    for phase, mb in parts["phases"].items():
        print(f"| after {phase} | {mb:.0f} |")
    print(f"\nbase weights (fp32 parameters): {parts['weights_mb']:.0f} MB; saved for backward by one micro-batch "
          f"({parts['step_tokens']} tokens): " + ", ".join(f"{k} {v:.0f} MB" for k, v in parts["saved_mb"].items()))


if __name__ == "__main__":
    main()
