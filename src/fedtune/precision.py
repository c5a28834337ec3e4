"""Mixed precision on CPU: bf16 autocast only where the CPU has bf16 matrix units.

On CPUs without them (AVX2-only, or AVX-512 without the BF16 extension) bf16 matmuls are emulated
and far slower than fp32, so ``auto`` picks fp32 there.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def cpu_has_bf16_units() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def use_bf16(setting: str) -> bool:
    return setting == "on" or (setting == "auto" and cpu_has_bf16_units())


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
