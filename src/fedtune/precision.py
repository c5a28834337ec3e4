"""Mixed precision per device: which autocast dtype a forward pass runs in, and whether the loss
needs scaling.

``train.bf16`` (``on`` | ``off`` | ``auto``) picks, through one pure function (``choose``):
- CPU: bf16 autocast only where the CPU has bf16 matrix units (AVX512_BF16 or AMX); without
  them bf16 matmuls are emulated and far slower than fp32, so ``auto`` stays in fp32.
- CUDA: bf16 autocast where the GPU supports it (Ampere and later), else fp16 autocast with a
  ``GradScaler`` on the loss (fp16's narrow range underflows small gradients without it).
- MPS: fp32 under ``auto`` (its autocast support varies by torch and macOS version); ``on`` = bf16.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
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


def choose(setting: str, device_type: str, cuda_bf16: bool, cpu_bf16_units: bool) -> torch.dtype | None:
    """The autocast dtype for ``setting`` on a device of ``device_type`` with these capabilities
    (None = full fp32). ``on`` asks for half precision: bf16, or fp16 on a GPU without bf16."""
    if setting == "off":
        return None
    if device_type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float16
    if setting == "on" or (device_type == "cpu" and cpu_bf16_units):
        return torch.bfloat16
    return None


@dataclass(frozen=True)
class Precision:
    """How forward passes on one device run: ``dtype`` None = fp32, else autocast to it."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def loss_scaling(self) -> bool:
        """fp16 needs its loss scaled (``scaler()``); bf16 has fp32's range and does not."""
        return self.dtype == torch.float16

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, a pass-through one (scale 1, plain ``optimizer.step``) unless fp16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.loss_scaling)


def precision_for(setting: str, device: torch.device) -> Precision:
    """``setting`` on this machine's ``device``, with its real capabilities."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    cpu_units = device.type == "cpu" and cpu_has_bf16_units()
    return Precision(device.type, choose(setting, device.type, cuda_bf16, cpu_units))
