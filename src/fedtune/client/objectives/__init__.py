"""Local training objectives: SFT and the DPO family."""
