"""Export a run's adapter: merged into its base model as a standalone Hugging Face model."""

from __future__ import annotations

from pathlib import Path

from fedtune.config import load_config
from fedtune.models.loader import load_model


def load_with_adapter(model_name: str, adapter_dir: Path, gguf_file: str | None = None, revision: str | None = None):
    """Base model + a saved PEFT adapter (``PeftModel.from_pretrained``), and the tokenizer."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir}: no PEFT adapter here (adapter_config.json missing)")
    loaded = load_model(model_name, gguf_file, revision)
    return PeftModel.from_pretrained(loaded.model, str(adapter_dir)).eval(), loaded.tokenizer


def export_merged(run_dir: Path, out: Path) -> Path:
    """Merge ``run_dir/adapter`` into the base model named in ``run_dir/config.yaml``."""
    cfg = load_config(Path(run_dir) / "config.yaml")
    model, tokenizer = load_with_adapter(cfg.model.name, Path(run_dir) / "adapter", cfg.model.gguf_file,
                                         cfg.model.revision)
    merged = model.merge_and_unload()
    out = Path(out)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
