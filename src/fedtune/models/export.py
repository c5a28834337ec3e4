"""Export a run's adapter: merged into its base model as a standalone Hugging Face model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fedtune.models.loader import load_base

if TYPE_CHECKING:
    from fedtune.models.config import ModelConfig


def load_with_adapter(model: "ModelConfig", adapter_dir: Path):
    """Base model + a saved PEFT adapter (``PeftModel.from_pretrained``), and the tokenizer."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir}: no PEFT adapter here (adapter_config.json missing)")
    loaded = load_base(model)
    return PeftModel.from_pretrained(loaded.model, str(adapter_dir)).eval(), loaded.tokenizer


def export_merged(model: "ModelConfig", adapter_dir: Path, out: Path) -> Path:
    """Merge the adapter in ``adapter_dir`` into the base model ``model`` names; save both to ``out``."""
    peft_model, tokenizer = load_with_adapter(model, adapter_dir)
    merged = peft_model.merge_and_unload()
    out = Path(out)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
