"""Local training objectives, one file each (SFT, DPO, β-DPO, Dr. DPO), found by ``OBJECTIVES``
(``fedtune ls objectives``)."""

from fedtune.client.objectives import beta_dpo, dpo, dr_dpo, sft  # noqa: F401  (each registers itself)
from fedtune.client.objectives.registry import OBJECTIVES, record_kind  # noqa: F401
