"""Shared benchmark plumbing: machine description and matmul peaks measured in the same run."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from fedtune.precision import cpu_has_bf16_units

_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
# GSM8K records for training jobs: the train split where ../shared/data has it, else the test split
GSM8K_TRAIN = _GSM8K / "train.jsonl" if (_GSM8K / "train.jsonl").exists() else _GSM8K / "test.jsonl"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    units = "bf16 matrix units" if cpu_has_bf16_units() else "no bf16 matrix units (AVX2/fp32)"
    return f"{cpu} ({units}), {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.python_version()}"


def suite_arguments(description: str, rounds: int = 4, steps: int = 4) -> argparse.ArgumentParser:
    """A parser with the options the suite benchmarks share: the model, clients, rounds, local
    steps and the output directory."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--out", type=Path, default=None)
    return p


def suite_grid(clients: int, rounds: int, steps: int, rules: str = "echo,bracket,suffix,swap,reverse") -> list[str]:
    """The ``--set`` overrides the research benchmarks share: the built-in suite with 2 entities
    and 16 skill examples per client, 6 test items per rule, batch 4."""
    return [f"federation.num_clients={clients}", f"federation.rounds={rounds}", f"train.steps={steps}",
            "train.batch_size=4", "data.suite.entities_per_client=2", "data.suite.skill_train_per_client=16",
            "data.suite.test_per_rule=6", f"data.suite.rules=[{rules}]"]


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n matmul in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9
