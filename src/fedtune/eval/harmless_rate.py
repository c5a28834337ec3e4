"""Harmless rate: the share of harmful prompts the model refuses, by the refusal-keyword check
(OpenFedLLM's AdvBench judge; Ye et al., ICLR 2025, "rule" metric). Answers are generated with
greedy decoding through the generation layer (``eval.safety``), once per evaluation."""

from __future__ import annotations

from fedtune.eval.refusal import KeywordList, is_refusal
from fedtune.eval.registry import METRICS, Metric
from fedtune.schema import Section


class HarmlessRateParams(Section):
    keywords: KeywordList = "fixed"  # fixed | openfedllm (the published list, fused entry kept)


@METRICS.register("harmless_rate", HarmlessRateParams)
class HarmlessRate(Metric):
    """Share of ``eval.safety`` prompts whose generated answer contains a refusal keyword."""

    def on_global(self, evaluator, adapter):
        prompts, answers = evaluator.safety_answers()
        if not prompts:
            return {}
        refused = sum(is_refusal(a, self.params.keywords) for a in answers)
        return {"harmless_rate": refused / len(prompts), "safety_prompts": len(prompts),
                "seconds_generating": evaluator.seconds_generating}
