"""Client-level DP (DP-FedAvg, McMahan et al., ICLR 2018) as a wrapper of the aggregation seam.

Each round: every client's delta Δ_i = y_i − x is clipped to L2 norm C over the whole adapter
(all LoRA tensors at once: the privacy unit is a client's whole update), the m clipped deltas
are averaged with equal weights, and Gaussian noise N(0, (z·C/m)²) is added to every coordinate
of the mean. Whatever the strategy then does with the mean (FedAvg's step, server momentum,
FedAdam's moments) is post-processing, so the guarantee covers every strategy.

Adaptive clipping (Andrew, Thakkar, McMahan & Ramaswamy, NeurIPS 2021, Alg. 1): each client
also releases b_i = 1 if ‖Δ_i‖ ≤ C (unclipped); the server forms the noisy share
b = (Σ b_i + N(0, σ_b²)) / m and moves C ← C·exp(−η_C (b − γ)), so C *grows* while fewer than
γ of the updates fit under it and shrinks while more do. (Flower 1.41's adaptive wrappers count
b_i = 1 when an update *was* clipped with the same sign, which moves C away from the quantile:
``tests/test_privacy.py`` shows both directions.) The count's noise is paid for out of the same
budget: the updates get z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2), so the pair is accounted as noise z.

``side: client``: clients clip their own delta (and report b_i) before it leaves, as needed
when the server must not see single updates (secure aggregation); the server clips again,
which changes nothing for an honest client and bounds a dishonest one.
"""

from __future__ import annotations

import math

import torch

from fedtune.algorithms.aggregation.delta import Delta
from fedtune.algorithms.aggregation.geometry import clip_to_norm, norms
from fedtune.client.batching import round_rng
from fedtune.privacy.accountant import calibrate, epsilon
from fedtune.privacy.config import ClientLevelDP
from fedtune.protocol import ClientUpdate
from fedtune.schema import ConfigError

CLIP_NORM = "dp_clip_norm"  # instruction config: the norm a client clips its own delta to (side: client)
UNCLIPPED = "dp_unclipped"  # client metric: 1.0 if its delta fitted under the norm before clipping


def sample_rate(dp: ClientLevelDP, clients_per_round: int, num_clients: int) -> float:
    """The q the accountant uses per round (see ``ClientLevelDP.amplification``)."""
    return 1.0 if dp.amplification == "none" else clients_per_round / num_clients


def client_level_privacy(cfg) -> "ClientLevelPrivacy | None":
    """The run's wrapper (``cfg`` a RunConfig), None without ``privacy.client_level``."""
    dp, fed = cfg.privacy.client_level, cfg.federation
    if dp is None:
        return None
    privacy = ClientLevelPrivacy(dp, sample_rate(dp, fed.per_round(), fed.num_clients), fed.rounds, cfg.seed)
    if privacy.exceeds_budget(1):
        raise ConfigError(f"privacy.client_level: one round already spends ε {privacy.epsilon(1):.3g} > "
                          f"max_epsilon {dp.max_epsilon:g}")
    return privacy


def noise_multiplier(dp: ClientLevelDP, q: float, rounds: int) -> float:
    """z: the configured one, or the smallest that keeps ``rounds`` rounds within target_epsilon."""
    if dp.noise_multiplier is not None:
        return dp.noise_multiplier
    return calibrate(dp.target_epsilon, dp.delta, q, rounds)


def update_noise_multiplier(dp: ClientLevelDP, z: float, m: int) -> float:
    """The noise multiplier left for the updates: z itself, or (adaptive) z_Δ after the count's share."""
    if dp.clipping == "fixed" or z == 0:
        return z
    sigma_b = dp.clipped_count_stddev or m / 20
    if z >= 2 * sigma_b:
        raise ConfigError(f"privacy.client_level: noise multiplier {z:.3g} >= 2 x clipped_count_stddev "
                          f"({sigma_b:.3g}); raise clipped_count_stddev (Andrew et al. need z < 2σ_b)")
    return (z ** -2 - (2 * sigma_b) ** -2) ** -0.5


class ClientLevelPrivacy:
    """The wrapper's state (the current clipping norm C) and its two steps: ``clip`` the deltas,
    ``privatize`` their mean; ``epsilon(n)`` accounts n rounds. Noise comes from a generator seeded
    by (run seed, round): a resumed run draws exactly the noise the uninterrupted one did.
    ``rounds`` (the run's) is what ``target_epsilon`` calibrates z for; q is ``sample_rate``."""

    def __init__(self, dp: ClientLevelDP, q: float, rounds: int, seed: int = 0):
        self.dp, self.q, self.seed = dp, q, seed
        self.z = noise_multiplier(dp, q, rounds)
        self.clip_norm = dp.clip_norm
        self.report: dict = {}
        self._unclipped: list[float] = []

    def instruction_config(self) -> dict:
        """What a client needs to clip its own delta (side: client); {} otherwise."""
        return {CLIP_NORM: self.clip_norm} if self.dp.side == "client" else {}

    def clip(self, deltas: list[Delta], updates: list[ClientUpdate]) -> list[Delta]:
        """Every delta clipped to the current C; records b_i (the clients' own bits on side: client)."""
        sizes = norms(deltas)
        if self.dp.side == "client":
            self._unclipped = [float(u.metrics.get(UNCLIPPED, 1.0)) for u in updates]
        else:
            self._unclipped = [1.0 if n <= self.clip_norm else 0.0 for n in sizes]
        return [clip_to_norm(d, n, self.clip_norm) for d, n in zip(deltas, sizes)]

    def privatize(self, mean: Delta, m: int, round: int) -> Delta:
        """The mean of m clipped deltas plus N(0, (z_Δ·C/m)²) per coordinate; then the adaptive C step."""
        z_update = update_noise_multiplier(self.dp, self.z, m)
        std = z_update * self.clip_norm / m
        gen = torch.Generator().manual_seed(round_rng(self.seed, round, -1, "dp-noise").getrandbits(63))
        # drawn in sorted key order: a resumed run's adapter (read from safetensors) lists its keys differently
        noisy = {k: mean[k] + std * torch.randn(mean[k].shape, generator=gen, dtype=mean[k].dtype) for k in sorted(mean)}
        self.report = {"clip_norm": self.clip_norm, "unclipped": sum(self._unclipped) / m, "noise_std": std}
        if self.dp.clipping == "adaptive":
            sigma_b = self.dp.clipped_count_stddev or m / 20
            count_noise = float(torch.randn((), generator=gen, dtype=torch.float64)) * sigma_b if self.z > 0 else 0.0
            share = (sum(self._unclipped) + count_noise) / m
            self.clip_norm *= math.exp(-self.dp.clip_lr * (share - self.dp.target_quantile))
            self.report["next_clip_norm"] = self.clip_norm
        return noisy

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"clip_norm": torch.tensor([self.clip_norm], dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.clip_norm = float(state["clip_norm"][0])


    def epsilon(self, rounds: int) -> float:
        """ε after ``rounds`` noisy releases (δ = ``delta``)."""
        return epsilon(self.z, self.q, rounds, self.dp.delta)

    def exceeds_budget(self, rounds: int) -> bool:
        """Whether ``rounds`` releases would spend more than ``max_epsilon``."""
        return self.dp.max_epsilon is not None and self.epsilon(rounds) > self.dp.max_epsilon

    def account(self, rounds: int) -> dict:
        """The metrics row's record after ``rounds`` releases."""
        return {"epsilon": self.epsilon(rounds), "delta": self.dp.delta, "noise_multiplier": self.z,
                "sample_rate": self.q}
