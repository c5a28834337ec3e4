"""Client side: the local trainer, its objectives (SFT, the DPO family), training hooks and
the per-client state store. FL algorithms add their hooks from ``fedtune.algorithms``."""
