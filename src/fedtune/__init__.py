"""fedtune: federated LLM post-training (SFT and the DPO family) with LoRA."""

__version__ = "0.1.0"
