"""The ``privacy`` config section: client-level DP (DP-FedAvg), sample-level DP-SGD on each
client, and secure aggregation on the deployment engine. Each is off (null) by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fedtune.schema import Section


class Budget(Section):
    """Noise given directly, or calibrated before the run to reach ``target_epsilon``."""

    noise_multiplier: float | None = Field(None, ge=0)  # z: noise std = z x the clipping norm
    target_epsilon: float | None = Field(None, gt=0)  # calibrate z so the whole run spends this ε
    delta: float = Field(1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier or target_epsilon")
        return self


class ClientLevelDP(Budget):
    """DP-FedAvg (McMahan et al., ICLR 2018): each client's delta clipped to L2 norm C over the
    whole adapter, Gaussian noise of std z·C/m on the mean of the m deltas — an equal-weight mean
    whatever ``aggregation.weighting`` says, since the noise is calibrated to it; adaptive clipping
    moves C towards the ``target_quantile`` of update norms (Andrew et al., NeurIPS 2021)."""

    clipping: Literal["fixed", "adaptive"] = "fixed"
    clip_norm: float = Field(1.0, gt=0)  # C (adaptive: the initial C)
    side: Literal["server", "client"] = "server"  # who clips; the server adds noise
    target_quantile: float = Field(0.5, gt=0, lt=1)  # adaptive: γ, the share of updates left unclipped
    clip_lr: float = Field(0.2, gt=0)  # adaptive: η_C in C <- C·exp(-η_C (b - γ))
    clipped_count_stddev: float | None = Field(None, gt=0)  # adaptive: σ_b; None = m/20 (Andrew et al.)
    # The sampling the accountant assumes: "none" = every round releases to everyone (valid for any
    # sampling, the conservative bound); "poisson" = amplification by q = clients_per_round /
    # num_clients, McMahan et al.'s analysis (fedtune samples a fixed count: an approximation).
    amplification: Literal["none", "poisson"] = "none"
    max_epsilon: float | None = Field(None, gt=0)  # stop (resumably) before a round would exceed it


class SampleLevelDP(Budget):
    """DP-SGD on each client (Abadi et al., CCS 2016) through Opacus: per-example gradients of
    the adapter clipped to ``clip_norm``, Gaussian noise z·C per step, one RDP accountant per client."""

    clip_norm: float = Field(1.0, gt=0)
    # poisson: each example joins a step with probability B/N (what the accountant assumes);
    # shuffle: fixed-size batches as without DP (the accountant's Poisson analysis is then an approximation).
    sampling: Literal["poisson", "shuffle"] = "poisson"


class SecureAggregation(Section):
    """Flower's SecAgg+ (Bell et al., CCS 2020) on the deployment engine: the server sees only
    the masked sum of the clients' updates."""

    num_shares: int | float = 3  # secret shares per client (int, or a share of the sampled clients)
    reconstruction_threshold: int | float = 2  # shares needed to unmask (the dropouts it survives)
    clipping_range: float = Field(8.0, gt=0)  # values are clipped to ±this before quantization
    quantization_range: int = Field(2**22, gt=0)
    timeout: float | None = None  # seconds per stage; None = wait


class PrivacyConfig(Section):
    client_level: ClientLevelDP | None = None
    sample_level: SampleLevelDP | None = None
    secure_aggregation: SecureAggregation | None = None
