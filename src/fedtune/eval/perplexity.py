"""The ``perplexity`` task: how well the model predicts held-out text (no chat template).

Each item's ``text_field`` is scored whole, in disjoint windows of ``max_length`` tokens, each
conditioned on up to ``max_length`` tokens before it (the first token is predicted from the
end-of-text token, as lm-eval's ``loglikelihood_rolling`` does with its prefix token). Figures are lm-eval's for that output type: token ``perplexity``
(exp of the mean token NLL), ``word_perplexity`` (exp of NLL per whitespace word),
``byte_perplexity`` and ``bits_per_byte`` (NLL per UTF-8 byte, in nats then bits).
"""

from __future__ import annotations

import math
import re

from pydantic import Field

from fedtune.eval.continuations import score_token_pairs
from fedtune.eval.tasks import TASKS, EvalTask, FileTaskParams, field


class PerplexityParams(FileTaskParams):
    text_field: str = "text"
    max_length: int = Field(1024, ge=2)  # tokens per scored window


def windows(ids: list[int], size: int, prefix: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) token windows covering ``ids`` once."""
    return [(ids[max(0, start - size):start] if start else [prefix], ids[start:start + size])
            for start in range(0, len(ids), size)]


@TASKS.register("perplexity", PerplexityParams)
class PerplexityTask(EvalTask):
    """Perplexity, word perplexity and bits per byte of held-out text."""

    def run(self, evaluator, items):
        p, ws = self.params, evaluator.ws
        table = self.table(evaluator)
        texts = [str(field(row, p.text_field, where)) for row, where in zip(table.rows, table.where)]
        pairs, owner = [], []
        for i, text in enumerate(texts):
            for piece in windows(ws.tokenizer(text, add_special_tokens=False)["input_ids"], p.max_length,
                                 ws.tokenizer.eos_token_id):
                pairs.append(piece)
                owner.append(i)
        scored = score_token_pairs(ws.model, pairs, evaluator.pad_id, evaluator.cfg.eval.batch_size, evaluator.precision)
        nll, tokens = [0.0] * len(texts), [0] * len(texts)
        for i, s in zip(owner, scored):
            nll[i] -= s.logprob
            tokens[i] += s.tokens
        items.write([{"where": w, "nll": v, "tokens": t, "perplexity": math.exp(v / max(t, 1))}
                     for w, v, t in zip(table.where, nll, tokens)])
        total, nbytes = math.fsum(nll), sum(len(t.encode()) for t in texts)
        words = sum(len(re.split(r"\s+", t)) for t in texts)  # lm-eval's word count
        return {"perplexity": math.exp(total / max(sum(tokens), 1)), "word_perplexity": math.exp(total / max(words, 1)),
                "byte_perplexity": math.exp(total / max(nbytes, 1)), "bits_per_byte": total / max(nbytes, 1) / math.log(2),
                "tokens": sum(tokens), "n": len(texts)}
