"""The ``train`` config section: the local objective and how each client trains in a round."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedtune.client.objectives import OBJECTIVES, record_kind
from fedtune.schema import AutoSwitch, Section


class TrainConfig(Section):
    # sft | dpo | beta-dpo | dr-dpo, with its own parameters: {name: dpo, beta: 0.1, reference: start}
    objective: OBJECTIVES.choice(default="sft") = "sft"
    steps: int = Field(5, ge=1)  # optimizer steps per client per round
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # across rounds, constant inside a round (OpenFedLLM)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = 1.0
    # half-precision autocast; auto = bf16 on a GPU that has it (else fp16 with loss scaling), on a
    # CPU only with bf16 matrix units (see fedtune.precision)
    bf16: AutoSwitch = "auto"
    # recompute activations in backward (less memory, more compute); not with DP-SGD or prefix tuning
    gradient_checkpointing: bool = False
    optimizer_state: Literal["fresh", "persist"] = "fresh"  # AdamW state reset each round, or kept per client
    threads: int | None = None  # torch intra-op threads; None = torch's default

    @property
    def record_kind(self) -> str:
        """The records this objective trains on: "sft" examples or "preference" pairs."""
        return record_kind(self.objective)

    @property
    def reference(self) -> str | None:
        """The preference objective's reference policy ("base" or "start"); None for SFT."""
        return getattr(self.objective, "reference", None)
