"""Canary exposure: how much more likely the trained model finds a planted secret than random
ones (Carlini et al., USENIX Security 2019, "The Secret Sharer", §4), and whether greedy decoding
from the canary's prompt gives the secret away.

The log-perplexity of a secret is the summed token NLL of the canary's response under the chat
template and system prompt used in training. The secret is ranked among ``data.canaries.candidates``
random secrets of the same length (ties count against it, so leakage is never overstated), and

    exposure = log2(candidates + 1) − log2(rank)

the paper's rank-based estimate with the sampled candidates standing in for the whole randomness
space R: 0 bits when the secret looks like any other, log2(candidates + 1) when it ranks first.
The paper also extrapolates beyond the sample, −log2 Pr_r[Px(s[r]) ≤ Px(s[r̂])], from a skew-normal
fit to the candidates' log-perplexities; we report the rank estimate only, which needs no fit and
is bounded by the number of candidates scored.
"""

from __future__ import annotations

import math
import random

import torch
from pydantic import Field

from fedtune.data.canaries import Canary, CanaryConfig, make_canaries
from fedtune.data.tokenize import tokenize_sft
from fedtune.eval.registry import METRICS, Metric
from fedtune.models.device import model_device
from fedtune.models.logprobs import collate, response_logps
from fedtune.schema import ConfigError, Section
from fedtune.synth.generation import GENERATORS


def candidate_secrets(canary: Canary, cfg: CanaryConfig, seed: int) -> list[str]:
    """``cfg.candidates`` distinct random secrets other than the canary's, from a RNG of their own
    (all the others when the space is smaller: the rank is then exact)."""
    space = 10 ** cfg.digits
    n = min(cfg.candidates, space - 1)
    rng = random.Random(f"fedtune-canary-candidates-{seed}-{canary.client}-{canary.index}")
    drawn = (f"{x:0{cfg.digits}d}" for x in rng.sample(range(space), n + 1))
    return [s for s in drawn if s != canary.secret][:n]


def rank_and_exposure(secret_loss: float, candidate_losses: list[float]) -> tuple[int, float]:
    """Rank of the secret by log-perplexity (1 = lowest; a candidate that ties it ranks ahead of
    it) and the rank-based exposure log2(n + 1) − log2(rank), in bits."""
    rank = 1 + sum(loss <= secret_loss for loss in candidate_losses)
    return rank, math.log2(len(candidate_losses) + 1) - math.log2(rank)


class CanaryExposureParams(Section):
    batch_size: int = Field(128, ge=1)  # candidate secrets scored per forward pass


@METRICS.register("canary_exposure", CanaryExposureParams)
class CanaryExposure(Metric):
    """Exposure (bits) of the secrets planted by ``data.canaries``, and how many greedy decoding extracts."""

    def on_global(self, evaluator, adapter):
        cfg, ws = evaluator.cfg, evaluator.ws
        if cfg.data.canaries is None:
            raise ConfigError("eval.metrics: canary_exposure needs data.canaries (the secrets it measures)")
        canaries = make_canaries(cfg.data.canaries, ws.data.num_clients, cfg.seed)
        extracted = self._extracted(evaluator, canaries)
        details = {}
        for canary, hit in zip(canaries, extracted):
            losses = self._log_perplexities(evaluator, canary, candidate_secrets(canary, cfg.data.canaries, cfg.seed))
            rank, exposure = rank_and_exposure(losses[0], losses[1:])
            details[canary.name] = {"exposure": exposure, "rank": rank, "log_perplexity": losses[0], "extracted": hit}
        exposures = [d["exposure"] for d in details.values()]
        return {"canary_exposure": sum(exposures) / len(exposures), "canary_exposure_max": max(exposures),
                "canary_extracted": sum(extracted), "canaries": len(canaries), "canary_details": details}

    @torch.no_grad()
    def _log_perplexities(self, evaluator, canary: Canary, candidates: list[str]) -> list[float]:
        """Summed NLL of the canary's secret (first) and of each candidate, as its response."""
        cfg, ws = evaluator.cfg, evaluator.ws
        tokens = tokenize_sft([canary.record(s) for s in [canary.secret, *candidates]], ws.tokenizer,
                              cfg.data.max_length, cfg.data.system_prompt)
        if tokens.dropped:
            raise ConfigError("data.canaries: the canary's response does not fit in data.max_length")
        ws.model.eval()
        out = []
        for start in range(0, len(tokens), self.params.batch_size):
            end = start + self.params.batch_size
            batch = collate(tokens.input_ids[start:end], tokens.labels[start:end], evaluator.pad_id,
                            model_device(ws.model))
            with evaluator.precision.autocast():
                out += (-response_logps(ws.model, batch)).tolist()
        return out

    def _extracted(self, evaluator, canaries: list[Canary]) -> list[bool]:
        """Whether greedy decoding from each canary's prompt (with the training system prompt) emits its secret."""
        params = GENERATORS.config("local", max_new_tokens=evaluator.cfg.data.canaries.digits + 8)
        answers = evaluator.generator(params).generate([evaluator.conversation(c.prompt) for c in canaries])
        return [c.secret in a for c, a in zip(canaries, answers)]
