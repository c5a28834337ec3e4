"""Models: loading (HF id, local dir, GGUF, built-in aliases), LoRA, adapter state, export."""
