"""Preference metrics on held-out pairs: implicit-reward accuracy and margin (as DPO logs them),
and the policy's own choice accuracy (comparable across models, unlike rewards)."""

from __future__ import annotations

import torch

from fedtune.client.objectives.preference import preference_metrics
from fedtune.eval.registry import METRICS, Metric
from fedtune.models.logprobs import reference_logps


@METRICS.register("reward_accuracy")
class RewardAccuracy(Metric):
    """Share of held-out pairs whose implicit reward β·(log π − log π_ref) prefers the chosen one."""

    def __init__(self, params):
        super().__init__(params)
        self._reference = None  # the reference policy's log-probs: computed once per run

    def on_global(self, evaluator, adapter):
        pairs, pad = evaluator.ws.global_test_pairs, evaluator.pad_id
        if pairs is None or not len(pairs):
            return {}
        idx = list(range(len(pairs)))
        if self._reference is None:
            self._reference = reference_logps(evaluator.ws.model, pairs, idx, evaluator.reference, pad)
        ref = self._reference
        policy = reference_logps(evaluator.ws.model, pairs, idx, adapter, pad)
        beta = getattr(evaluator.cfg.train.objective, "beta", 0.1)
        chosen = torch.tensor([beta * (policy[i][0] - ref[i][0]) for i in idx])
        rejected = torch.tensor([beta * (policy[i][1] - ref[i][1]) for i in idx])
        choice = sum(policy[i][0] > policy[i][1] for i in idx) / len(idx)
        return {**preference_metrics(chosen, rejected), "choice_accuracy": choice}
