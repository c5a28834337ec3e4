"""Data-quality control during federated training: FedDQC's IRA scores, filter and hierarchical
schedule, with the IFD, loss and random baselines (``quality`` section, docs/quality.md)."""

from fedtune.quality.config import QualityConfig

__all__ = ["QualityConfig"]
