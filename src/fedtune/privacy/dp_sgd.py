"""Sample-level DP-SGD on each client (Abadi et al., CCS 2016), with per-example gradients from
Opacus (``GradSampleModule`` hooks on the LoRA layers, the only modules with trainable weights).

One optimizer step: a Poisson sample of the client's examples (each joins with probability
q = B/N, B = batch_size × grad_accum), every example's gradient g_i over the whole adapter
clipped to L2 norm C, then ĝ = (Σ_i clip(g_i) + N(0, (z·C)²)) / B, and the usual AdamW step on ĝ.
A client's ε composes over every DP step it has taken in the run (RDP, ``accountant``); its
step count lives in the client's state store, so a resumed run accounts exactly.

Choices, each a departure from plain Opacus:
- The privacy unit is one training example: an SFT record (its loss the sum of its response
  tokens' NLL, the objective's micro-batch loss) or a DPO pair (its chosen and rejected rows'
  per-row gradients are summed before clipping; Opacus alone would clip them as two examples).
  So the clipping and noise are ours (a few lines); Opacus gives the per-row gradients.
- ``sampling: shuffle`` keeps the fixed-size batches of non-DP training; the accountant's
  Poisson analysis is then an approximation (as in dp-transformers).
- ``target_epsilon`` calibrates z per client, for its own q, as if it took part in every round
  (rounds × steps DP steps): a client sampled less often ends below the target.
- A step's data-independent loss terms (FedProx's proximal term) are added after the noise:
  they depend on no example.
Objectives whose loss is not a sum over examples (β-DPO's batch-level β and ρ filter, Dr. DPO's
log-mean-exp over the batch) have no per-example gradient and are refused.
"""

from __future__ import annotations

import random

import torch

from fedtune.client.batching import draw_indices
from fedtune.client.state_store import ClientStateStore
from fedtune.privacy.accountant import calibrate, epsilon
from fedtune.privacy.config import SampleLevelDP

STEPS = "dp_sgd_steps"  # ClientStateStore name: the DP steps a client has taken so far


class SampleLevelPrivacy:
    """The run's DP-SGD settings: ``rounds`` × ``steps`` is what ``target_epsilon`` is calibrated
    for, ``batch`` the expected examples per step (B)."""

    def __init__(self, dp: SampleLevelDP, rounds: int, steps: int, batch: int):
        self.dp, self.rounds, self.steps, self.batch = dp, rounds, steps, batch

    def sample_rate(self, n: int) -> float:
        return min(1.0, self.batch / n)

    def noise_multiplier(self, n: int) -> float:
        if self.dp.noise_multiplier is not None:
            return self.dp.noise_multiplier
        return calibrate(self.dp.target_epsilon, self.dp.delta, self.sample_rate(n), self.rounds * self.steps)

    def batches(self, n: int, steps: int, rng: random.Random) -> list[list[int]]:
        """Each step's examples: Poisson (every example independently with probability q) or
        fixed-size shuffled batches."""
        if self.dp.sampling == "shuffle":
            picked = draw_indices(n, self.batch * steps, rng)
            return [picked[s * self.batch:(s + 1) * self.batch] for s in range(steps)]
        q = self.sample_rate(n)
        return [[i for i in range(n) if rng.random() < q] for _ in range(steps)]

    def begin(self, model, n: int, client_id: int, store: ClientStateStore) -> "DPSGDRound":
        return DPSGDRound(self, model, n, client_id, store)


class DPSGDRound:
    """One client's DP-SGD for one round: hooks attached at the start, removed by ``close``."""

    def __init__(self, settings: SampleLevelPrivacy, model, n: int, client_id: int, store: ClientStateStore):
        from opacus import GradSampleModule

        self.settings, self.n, self.client_id, self.store = settings, n, client_id, store
        self.z = settings.noise_multiplier(n)
        self.gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
        saved = store.get(client_id, STEPS)
        self.steps_before = int(saved["count"]) if saved is not None else 0
        self.steps = 0
        self.clipped = self.examples = 0
        self.sum: dict[str, torch.Tensor] = {}

    def accumulate(self, params: dict[str, torch.nn.Parameter], rows_per_example: int) -> None:
        """After a micro-batch's backward: add its examples' clipped gradients to the step's sum
        and clear what autograd and Opacus left on the parameters."""
        grads = {}
        for key, p in params.items():
            rows = p.grad_sample
            rows = torch.cat(rows) if isinstance(rows, list) else rows
            # a DPO pair's rows are [chosen_0..n-1, rejected_0..n-1]: one example = their sum
            grads[key] = rows.reshape(rows_per_example, -1, *rows.shape[1:]).sum(0).double()
            p.grad_sample, p.grad = None, None
        norms = torch.sqrt(sum((g.flatten(1) ** 2).sum(1) for g in grads.values()))
        scale = (self.settings.dp.clip_norm / (norms + 1e-12)).clamp(max=1.0)
        self.clipped += int((scale < 1).sum())
        self.examples += len(norms)
        for key, g in grads.items():
            clipped = torch.einsum("i,i...->...", scale, g)
            self.sum[key] = self.sum[key] + clipped if key in self.sum else clipped

    def finish_step(self, params: dict[str, torch.nn.Parameter], generator: torch.Generator) -> None:
        """p.grad <- (Σ clipped + N(0, (z·C)²)) / B (+ any data-independent gradient already in p.grad)."""
        std = self.z * self.settings.dp.clip_norm
        for key in sorted(params):
            p = params[key]
            total = self.sum.get(key, torch.zeros(p.shape, dtype=torch.float64, device=p.device))
            # drawn on the CPU from the round's generator, so the noise is the same on every device
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.device)
            noisy = (total + std * noise) / self.settings.batch
            p.grad = noisy.to(p.dtype) if p.grad is None else p.grad + noisy.to(p.dtype)
        self.sum = {}
        self.steps += 1

    def close(self) -> dict[str, float]:
        """Remove the hooks, save the step count, and return the round's privacy metrics."""
        self.gsm._close()
        total = self.steps_before + self.steps
        self.store.put(self.client_id, STEPS, {"count": torch.tensor(total)})
        q = self.settings.sample_rate(self.n)
        return {"dp_epsilon": epsilon(self.z, q, total, self.settings.dp.delta), "dp_noise_multiplier": self.z,
                "dp_sample_rate": q, "dp_clipped_share": self.clipped / max(self.examples, 1)}


def sample_level_privacy(cfg) -> SampleLevelPrivacy | None:
    """The run's DP-SGD settings (``cfg`` a RunConfig), None without ``privacy.sample_level``."""
    dp = cfg.privacy.sample_level
    if dp is None:
        return None
    return SampleLevelPrivacy(dp, cfg.federation.rounds, cfg.train.steps, cfg.train.batch_size * cfg.train.grad_accum)
