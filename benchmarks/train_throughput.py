"""Tokens/s of fedtune's local loop vs TRL's SFTTrainer on the same model, data and machine.

Usage: python benchmarks/train_throughput.py [--steps 6] [--bf16-steps 1]
Prints the ratios the foundation issue targets: ours / TRL default, ours / TRL bf16, and model
FLOP/s (4 * N * tokens/s for LoRA, N = base parameters) against the measured matmul peaks.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from common import machine, matmul_peak

from fedtune.client.state_store import ClientStateStore
from fedtune.client.train_config import TrainConfig
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.data.config import SuiteConfig
from fedtune.data.suite import build_suite
from fedtune.data.tokenize import tokenize_sft
from fedtune.models.adapters import ADAPTERS, attach_adapter
from fedtune.models.adapters.state import get_adapter
from fedtune.models.loader import load_model
from fedtune.protocol import ClientInstruction

BATCH, LR, SYSTEM = 8, 1e-3, "Answer with the answer only."


def records():
    data = build_suite(SuiteConfig(entities_per_client=8, skill_train_per_client=64), 1, seed=0)
    return data.clients[0].train


def ours(recs, steps: int, model_name: str = "smollm2-135m-instruct", device: str = "cpu",
         bf16: str = "off") -> tuple[float, float]:
    """fedtune's LocalTrainer: (real tokens/s after a warm-up round, base parameters)."""
    loaded = load_model(model_name)
    loaded.model.to(device)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    model = attach_adapter(loaded.model, ADAPTERS.config("lora", r=16, alpha=32, target_modules="all-linear"))
    tokens = tokenize_sft(recs, loaded.tokenizer, 256, SYSTEM)
    trainer = LocalTrainer(model, loaded.tokenizer, TrainConfig(batch_size=BATCH, bf16=bf16),
                           ClientStateStore(tempfile.mkdtemp()))
    start = get_adapter(model)
    data = LocalData(0, tokens)
    trainer.train(ClientInstruction(0, 0, LR, 1), start, data)  # warm-up
    update = trainer.train(ClientInstruction(0, 1, LR, steps), start, data)
    return update.metrics["tokens"] / update.metrics["seconds"], n_params


def trl(recs, steps: int, bf16: bool, model_name: str = "smollm2-135m-instruct", use_cpu: bool = True) -> float:
    """TRL as a user would configure it: SFTTrainer + peft_config, conversational data; real
    tokens/s over the steps after the first."""
    from datasets import Dataset
    from peft import LoraConfig as PeftLora
    from trl import SFTConfig, SFTTrainer

    loaded = load_model(model_name)
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, *r["messages"]]} for r in recs]
    args = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps + 1, per_device_train_batch_size=BATCH,
                     learning_rate=LR, bf16=bf16, report_to=[], logging_steps=1000, save_strategy="no",
                     use_cpu=use_cpu, dataloader_num_workers=0, max_length=256)
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=loaded.tokenizer,
                         peft_config=PeftLora(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    step_times = []

    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.t)

    trainer.add_callback(Clock())
    trainer.train()
    mean_tokens = sum(lengths) / len(lengths) * BATCH  # real (unpadded) tokens per step
    return mean_tokens / (sum(step_times[1:]) / len(step_times[1:]))  # first step is warm-up


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--bf16-steps", type=int, default=1, help="TRL bf16 steps (slow without bf16 units)")
    args = p.parse_args()
    torch.manual_seed(0)
    recs = records()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16, n=512, repeats=2)
    ours_tps, n_params = ours(recs, args.steps)
    trl_default = trl(recs, args.steps, bf16=False)
    trl_bf16 = trl(recs, args.bf16_steps, bf16=True)
    flops = 4 * n_params * ours_tps / 1e9
    print(f"machine: {machine()}")
    print(f"matmul peak: fp32 {peak32:.1f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s")
    print(f"fedtune local loop : {ours_tps:8.1f} tokens/s  ({flops:.1f} GFLOP/s model FLOPs, N={n_params / 1e6:.1f}M)")
    print(f"TRL SFTTrainer     : {trl_default:8.1f} tokens/s  -> ours/TRL default = {ours_tps / trl_default:.2f}x")
    print(f"TRL SFTTrainer bf16: {trl_bf16:8.1f} tokens/s  -> ours/TRL bf16    = {ours_tps / trl_bf16:.2f}x")
    print(f"model FLOP/s vs peak: {flops / peak32:.0%} of fp32 matmul peak, {flops / peak16:.0%} of bf16 matmul peak")
    print("note: 4*N*tokens counts the LM head at every position; fedtune runs it only where a label is,")
    print("      so on short-answer data the figure overstates the FLOPs fedtune actually executes")


if __name__ == "__main__":
    main()
