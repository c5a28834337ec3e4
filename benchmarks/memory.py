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
import threading
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


def run_child(argv: list[str]) -> dict:
    """One child process: its peak RSS (the kernel's, read with wait4), wall seconds and stdout,
    plus when the peak came: RSS sampled every 0.2 s, and the last line the child logged before
    the highest sample (which phase of the run it was in)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, samples = [], []

    def sample():
        child = psutil.Process(proc.pid)
        while proc.returncode is None:
            try:
                samples.append((time.perf_counter() - started, child.memory_info().rss / MB))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:  # every line the child logs, timed
        lines.append((time.perf_counter() - started, line.rstrip()))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {lines[-1][1] if lines else ''}")
    at, _ = max(samples, key=lambda s: s[1], default=(0.0, 0.0))
    before = [text for t, text in lines if t <= at and text.strip()]
    return {"peak_mb": usage.ru_maxrss * 1024 / MB, "wall": time.perf_counter() - started, "peak_at": at,
            "peak_during": before[-1][:100] if before else "start", "out": "\n".join(text for _, text in lines)}


def breakdown(overrides: list[str]) -> dict:
    """The phases of one client's training, in this process (see the module docstring)."""
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

    phases = {"imports": rss_mb()}
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
    p.add_argument("--checkpointing", default="off,on", help="the arms of `fedtune run`: off, on or both")
    p.add_argument("--no-breakdown", action="store_true", help="only the `fedtune run` arms")
    p.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args()
    if args.breakdown:
        print(json.dumps(breakdown(args.set)))
        return

    fedtune = str(Path(sys.executable).with_name("fedtune"))
    runs = {}
    for arm in args.checkpointing.split(","):
        label, extra = f"gradient checkpointing {arm}", [f"train.gradient_checkpointing={arm == 'on'}"]
        argv = [fedtune, "run", str(JOB), "--output", tempfile.mkdtemp(),
                *[a for o in [f"data.source={GSM8K}", *args.set, *extra] for a in ("--set", o)]]
        runs[label] = run_child(argv)
        r = runs[label]
        print(f"fedtune run, {label}: peak RSS {r['peak_mb']:.0f} MB, {r['wall']:.0f} s; peak at "
              f"{r['peak_at']:.0f} s, after the line: {r['peak_during']}", flush=True)
    print(f"\nmachine: {machine()}; job: {JOB.name} on {GSM8K.name}\n")
    print("| `fedtune run` on the job | peak RSS MB | wall s | peak at s |\n|---|---|---|---|")
    for label, r in runs.items():
        print(f"| {label} | {r['peak_mb']:.0f} | {r['wall']:.0f} | {r['peak_at']:.0f} |")
    if args.no_breakdown:
        return
    child = run_child([sys.executable, __file__, "--breakdown", *[a for o in args.set for a in ("--set", o)]])
    parts = json.loads(child["out"].strip().splitlines()[-1])
    print(f"\nprecision {parts['precision']}")
    print("\n| one client's training, in a fresh process | RSS MB |\n|---|---|")
    for phase, mb in parts["phases"].items():
        print(f"| after {phase} | {mb:.0f} |")
    print(f"\nbase weights (fp32 parameters): {parts['weights_mb']:.0f} MB; saved for backward by one micro-batch "
          f"({parts['step_tokens']} tokens): " + ", ".join(f"{k} {v:.0f} MB" for k, v in parts["saved_mb"].items()))


if __name__ == "__main__":
    main()
