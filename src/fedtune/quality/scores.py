"""Per-example quality scores from one forward pass with the current model, on the client's own
tokenized data (FedDQC, Du et al., Findings of ACL 2025, ``selection/conpro.py``).

    L_cond(x, y)  = mean token CE of the response y given the prompt (the run's chat template)
    L_uncond(y)   = mean token CE of y's tokens alone
    IRA           = L_uncond − L_cond   (high: the instruction explains the response)
    IFD           = L_cond / L_uncond   (Li et al. 2024; Data-Juicer's instruction_following_difficulty)

Choices (documented, differing from the authors' code): the prompt is the run's own chat template
(the one training uses), not the authors' Alpaca-style scoring prompt; y alone is the response's
own tokens as the template renders them (its end-of-turn token included), with no BOS added. The
scores rank examples within a client, so a constant shift from either choice does not change the
selection. Higher is better for every score: ``loss`` is −L_cond (a perplexity filter keeps the
lowest-loss examples), ``ifd`` is IFD itself among examples with IFD < 1 and −∞ above (Li et al.
keep high-IFD examples but drop IFD ≥ 1, where the instruction does not help at all).
"""

from __future__ import annotations

import random

from fedtune.data.tokenize import TokenizedSet
from fedtune.models.logprobs import IGNORE, mean_response_ce


def losses(model, tokens: TokenizedSet, pad_id: int, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """(L_cond, L_uncond) per example."""
    responses = [[t for t, label in zip(ids, labels) if label != IGNORE] for ids, labels in
                 zip(tokens.input_ids, tokens.labels)]
    was_training = model.training
    model.eval()
    try:
        cond = mean_response_ce(model, tokens.input_ids, tokens.labels, pad_id, batch_size)
        uncond = mean_response_ce(model, responses, responses, pad_id, batch_size)
    finally:
        model.train(was_training)
    return cond, uncond


def quality_scores(kind: str, model, tokens: TokenizedSet, pad_id: int, batch_size: int, rng: random.Random) -> list[float]:
    """One score per example, higher = keep first (see the module docstring)."""
    if kind == "random":
        return [rng.random() for _ in range(len(tokens))]
    cond, uncond = losses(model, tokens, pad_id, batch_size)
    if kind == "ira":
        return [u - c for c, u in zip(cond, uncond)]
    if kind == "loss":
        return [-c for c in cond]
    ifd = [c / u if u > 0 else float("inf") for c, u in zip(cond, uncond)]
    return [s if s < 1 else float("-inf") for s in ifd]
