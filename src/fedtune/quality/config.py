"""The ``quality`` config section: per-client data-quality control during federated training
(FedDQC and the centralized baselines it is compared with)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fedtune.schema import Section


class QualityConfig(Section):
    # ira: FedDQC's instruction-response alignment; ifd: instruction-following difficulty (Li et al.
    # 2024); loss: the conditional loss (perplexity filter); random: random selection at the same rate
    score: Literal["ira", "ifd", "loss", "random"] = "ira"
    select_rate: float | None = Field(0.5, gt=0, le=1)  # keep this top share per client (FedDQC's filter)
    threshold: float | None = None  # or keep scores >= this (an absolute cut; UNVERIFIED in the paper)
    # the hierarchical schedule: rounds split into ``stages``, each training on its band of the
    # kept data, highest scores first (easy_to_hard), lowest first, or all kept data every round
    order: Literal["easy_to_hard", "hard_to_easy", "none"] = "easy_to_hard"
    stages: int = Field(3, ge=1)
    rescore_each_stage: bool = False  # re-score with the current global model at each stage's start
    batch_size: int = Field(16, ge=1)  # examples per scoring forward pass

    @model_validator(mode="after")
    def _one_cut(self):
        if self.select_rate is not None and self.threshold is not None:
            raise ValueError("give select_rate or threshold, not both")
        return self
