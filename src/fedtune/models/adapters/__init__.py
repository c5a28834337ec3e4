"""PEFT adapter methods, one file each, found by ``ADAPTERS`` (``fedtune ls adapters``)."""

from fedtune.models.adapters import dora, ia3, lora, p_tuning, prefix, prompt  # noqa: F401  (each registers itself)
from fedtune.models.adapters.registry import ADAPTERS, attach_adapter  # noqa: F401
