"""The ``selective`` config section: which transformer layers each client trains and sends."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fedtune.schema import Section

# strategies whose choice does not look at the clients' data (no importance probe is run)
STATIC = ("all", "top", "bottom", "both")


class SelectiveConfig(Section):
    layers: int = Field(2, ge=1)  # b: the layer budget of every client (the lower end when heterogeneous)
    # equal: every client b layers; heterogeneous: the authors' truncated-normal draw per client,
    # round(truncnorm(a=b-1, b=spread+1, loc=1, scale=1)), budgets from b to spread+2
    budgets: Literal["equal", "heterogeneous"] = "equal"
    spread: int = Field(4, ge=0)  # the authors' n_layers_inc (heterogeneous budgets only)
    # all | top (output side) | bottom (input side) | both (alternating ends) | client_top (each
    # client's top-b by importance) | strategic (importance against disagreement, the paper's MIQP)
    strategy: Literal["all", "top", "bottom", "both", "client_top", "strategic"] = "strategic"
    # importance of layer l on client i from one gradient pass at the global adapter: grad_norm is the
    # authors' `diff` (squared norm of the accumulated gradient), rgn the relative one, snr mean²/std
    metric: Literal["grad_norm", "rgn", "snr"] = "grad_norm"
    balance: float = Field(0.0, ge=0)  # λ: the disagreement penalty (0 = client_top; the authors' default)
    # divide the scores by their mean before solving, so λ is in units of the mean score (the
    # authors' code uses the raw scores: normalize: false)
    normalize: bool = True
    pad_to_budget: bool = True  # fill a client the optimum leaves under budget with its top layers (the code does)
    every: int | None = Field(1, ge=1)  # re-select every this many rounds (the code's sel_gap); null: once
    probe_batches: int | None = Field(None, ge=1)  # batches of the importance pass (null: all local data)

    @property
    def probes(self) -> bool:
        """Whether the strategy needs the clients' layer importance."""
        return self.strategy not in STATIC

    @model_validator(mode="after")
    def _spread_covers_budget(self):
        if self.budgets == "heterogeneous" and self.spread + 1 <= self.layers - 1:
            raise ValueError(f"heterogeneous budgets draw from [layers, spread+2]: spread must be at least "
                             f"layers-1 = {self.layers - 1}")
        return self
