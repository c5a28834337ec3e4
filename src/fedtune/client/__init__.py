"""Client side: the local trainer, objectives (SFT, DPO family) and training hooks."""

# Client-side algorithms register their hook factories on import.
from fedtune.client import fedprox, scaffold  # noqa: F401,E402
