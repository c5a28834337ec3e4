"""PEFT adapter methods, one file each, found by ``ADAPTERS`` (``fedtune ls adapters``)."""

from fedtune.models.adapters import lora  # noqa: F401  (registers itself)
from fedtune.models.adapters.registry import ADAPTERS, attach_adapter  # noqa: F401
