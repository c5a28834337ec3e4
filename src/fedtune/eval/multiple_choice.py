"""The ``multiple_choice`` task: each choice scored by its log-likelihood as the model's answer;
``acc`` takes the most likely choice, ``acc_norm`` the most likely per character (lm-eval's
definitions: ``acc_norm`` divides by the choice's length in characters, so long choices are not
penalised for their extra tokens).

This is how a short-answer classification set is scored fairly: nothing is generated, so a
model that would answer in a sentence is still credited for preferring the right label. The
question goes through the chat template (with the run's system prompt) and each choice follows
as the start of the assistant's turn, encoded as lm-eval encodes it with ``apply_chat_template``
(``eval/continuations.py``), so the figures equal lm-eval's ``multiple_choice`` output type;
``engine: lm_eval`` runs the same items through the harness itself (``harness_task``).

An item's answer is the index of the right choice (0-based), its letter (A, B, …) or its text.
"""

from __future__ import annotations

import math
import string
from typing import Literal

from pydantic import Field

from fedtune.data.tokenize import render_chat
from fedtune.eval.continuations import score_continuations
from fedtune.eval.tasks import TASKS, EvalTask, QuestionTaskParams, field, questions


class MultipleChoiceParams(QuestionTaskParams):
    choices_field: str = "choices"
    answer_field: str = "answer"
    engine: Literal["native", "lm_eval"] = "native"  # lm_eval: the same items through lm-evaluation-harness
    harness_batch_size: int = Field(1, ge=1)  # engine lm_eval: its batch size


def answer_index(answer, choices: list[str], where: str) -> int:
    """The right choice's index from an index, a letter or the choice's text."""
    if isinstance(answer, bool):
        raise ValueError(f"{where}: answer {answer!r} is not an index, a letter or a choice")
    if isinstance(answer, int) or (isinstance(answer, str) and answer.isdigit()):
        i = int(answer)
    elif isinstance(answer, str) and answer in choices:
        i = choices.index(answer)
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in string.ascii_uppercase:
        i = string.ascii_uppercase.index(answer.strip().upper())
    else:
        raise ValueError(f"{where}: answer {answer!r} is not an index, a letter or one of the choices")
    if not 0 <= i < len(choices):
        raise ValueError(f"{where}: answer {answer!r} is out of range for {len(choices)} choices")
    return i


@TASKS.register("multiple_choice", MultipleChoiceParams)
class MultipleChoiceTask(EvalTask):
    """Choices ranked by log-likelihood: acc and acc_norm."""

    def run(self, evaluator, items):
        p, ws = self.params, evaluator.ws
        table = self.table(evaluator)
        pairs, spans, records = [], [], []
        for row, where, question in zip(table.rows, table.where, questions(table, p)):
            choices = field(row, p.choices_field, where)
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise ValueError(f"{where}: {p.choices_field!r} must be a list of at least two strings")
            context = render_chat(ws.tokenizer, evaluator.conversation(question), True)
            spans.append((len(pairs), len(choices)))
            pairs += [(context, c) for c in choices]
            records.append({"where": where, "question": question, "choices": choices,
                            "answer": answer_index(field(row, p.answer_field, where), choices, where)})
        if p.engine == "lm_eval":
            from fedtune.eval.lm_eval_bridge import run_local

            samples = run_local(self, evaluator, [{"question": r["question"], "choices": r["choices"],
                                                   "answer": r["answer"]} for r in records])
            loglikelihoods = [[float(ll) for ll, _ in s["filtered_resps"]] for s in samples]
        else:
            scored = score_continuations(ws.model, ws.tokenizer, pairs, evaluator.cfg.eval.batch_size,
                                         evaluator.precision)
            loglikelihoods = [[s.logprob for s in scored[start : start + k]] for start, k in spans]
        for rec, lls in zip(records, loglikelihoods):
            k = len(lls)
            normed = [ll / max(len(c), 1) for ll, c in zip(lls, rec["choices"])]
            rec.update(loglikelihoods=lls, pick=max(range(k), key=lls.__getitem__),
                       pick_norm=max(range(k), key=normed.__getitem__))
        items.write(records)
        n = len(records)
        return {"acc": sum(r["pick"] == r["answer"] for r in records) / n,
                "acc_norm": sum(r["pick_norm"] == r["answer"] for r in records) / n,
                "chance": sum(1 / len(r["choices"]) for r in records) / n, "n": n,
                "mean_loglikelihood_right": math.fsum(r["loglikelihoods"][r["answer"]] for r in records) / n}

    def harness_task(self, name: str, data_file: str) -> dict:
        """The equivalent harness task over ``data_file`` (rows: the rendered ``question``, the
        ``choices`` and the right one's index ``answer``)."""
        return {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": data_file}},
                "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
                "doc_to_choice": "choices", "doc_to_target": "answer",
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]}
