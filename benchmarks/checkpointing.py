"""What activation (gradient) checkpointing costs and saves in fedtune's local loop: real tokens/s
and peak memory of one client's round with `train.gradient_checkpointing` off and on, each arm in
a fresh process (peak RSS on a CPU, peak GPU memory on CUDA), on GSM8K records from
../shared/data/gsm8k read through fedtune's loader (question/answer format).

Usage: python benchmarks/checkpointing.py [--device cpu] [--batch 8] [--steps 5] [--max-length 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

from common import GSM8K_TRAIN as GSM8K
from common import machine


def arm(checkpointing: bool, model: str, device: str, batch: int, steps: int, max_length: int) -> dict:
    """One client's round of ``steps`` steps, in this process: tokens/s and peak memory."""
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

    cfg = load_config(None, [f"model.name={model}", f"model.device={device}", f"data.source={GSM8K}", "data.limit=200",
                             "federation.num_clients=1", f"train.batch_size={batch}", f"data.max_length={max_length}",
                             "model.adapter={method: lora, r: 16, alpha: 32, target_modules: [q_proj, v_proj]}",
                             f"train.gradient_checkpointing={str(checkpointing).lower()}"])
    loaded = load_base(cfg.model)
    data = build_federated_data(cfg, "sft", None, None, None)
    model = attach_adapter(loaded.model, cfg.model.adapter)
    tokens = tokenize_sft(data.clients[0].train, loaded.tokenizer, max_length, None)
    trainer = LocalTrainer(model, loaded.tokenizer, cfg.train, ClientStateStore(tempfile.mkdtemp()))
    start = get_adapter(model)
    trainer.train(ClientInstruction(0, 0, 1e-4, 1), start, LocalData(0, tokens))  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    update = trainer.train(ClientInstruction(0, 1, 1e-4, steps), start, LocalData(0, tokens))
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"tokens_per_s": update.metrics["tokens"] / update.metrics["seconds"], "peak_mb": peak / 2**20,
            "loss": update.metrics["loss"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--arm", choices=["off", "on"], help=argparse.SUPPRESS)  # one arm, in a child process
    args = p.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm == "on", args.model, args.device, args.batch, args.steps, args.max_length)))
        return
    results = {}
    for name in ("off", "on"):  # each arm in a fresh process: peak memory is the process's own
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--arm", name], capture_output=True,
                              text=True, check=True)
        results[name] = {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": time.perf_counter() - started}
        print(name, results[name], flush=True)
    off, on = results["off"], results["on"]
    print(f"\nmachine: {machine()}; device {args.device}; {args.model}, LoRA r16 q/v, batch {args.batch}, "
          f"max length {args.max_length}, {args.steps} steps on GSM8K")
    print("| gradient checkpointing | real tokens/s | peak memory MB |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['tokens_per_s']:.0f} | {r['peak_mb']:.0f} |")
    print(f"on/off: speed {on['tokens_per_s'] / off['tokens_per_s']:.2f}x, memory {on['peak_mb'] / off['peak_mb']:.2f}x")


if __name__ == "__main__":
    main()
