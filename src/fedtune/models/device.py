"""Where the model runs: ``model.device`` resolved once to a torch device, and the one way every
forward pass (training, evaluation, generation, scoring, DP-SGD) finds it again.

``auto`` is the first CUDA GPU when one is visible, else Apple's MPS, else the CPU. An explicit
device that this machine does not have is a one-line config error naming what it does have,
rather than a CUDA traceback on the first forward pass. Everything that leaves the model
(adapter states on the wire, in checkpoints, on disk) stays on the CPU; see
``fedtune.models.adapters.state``.
"""

from __future__ import annotations

import torch

from fedtune.schema import ConfigError


def visible_devices() -> str:
    """What this machine offers, for error messages: "cpu", "cpu, cuda:0, cuda:1", "cpu, mps"."""
    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    if mps_available():
        names.append("mps")
    return ", ".join(names)


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(setting: str, key: str = "model.device") -> torch.device:
    """The torch device ``setting`` names on this machine (``auto``: cuda, else mps, else cpu);
    ``key`` is the config key errors name."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if mps_available() else torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        index = device.index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(f"{key}: {setting} is not visible here (devices: {visible_devices()})")
        return torch.device("cuda", index)
    if device.type == "mps" and not mps_available():
        raise ConfigError(f"{key}: mps is not available here (devices: {visible_devices()})")
    return device


def model_device(model) -> torch.device:
    """The device the model's weights are on (where its inputs must go)."""
    return next(model.parameters()).device
