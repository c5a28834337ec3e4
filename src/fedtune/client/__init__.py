"""Client side: the local trainer, objectives (SFT, DPO family) and training hooks."""
