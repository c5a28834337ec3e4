"""The ``generation`` task: the model answers each question by greedy generation; the answer is
extracted (``extract``: GSM8K's ``#### N``, the last number, a regex, or the whole text) and
compared with the reference (``accuracy``), and the whole answer is scored by ROUGE-L against it.

This is the fair score for a model that answers in sentences: teacher-forced exact match calls
"The capital is Paris." wrong against "Paris"; extraction does not. Prompts go through the chat
template with the run's system prompt, as in training. The reference is extracted too when it
carries GSM8K's ``#### N`` (``reference_extract: auto``). Every answer, its extraction and its
verdict go to the task's item file. lm-eval's equivalent task (``lm_eval_bridge.local_task``)
scores the same items identically (tests/test_eval_tasks.py holds them to it on GSM8K).
"""

from __future__ import annotations

from typing import Literal

from fedtune.eval.answer_extraction import extract, matches
from fedtune.eval.rouge import rouge_l
from fedtune.eval.tasks import TASKS, EvalTask, FileTaskParams, field
from fedtune.synth.generation import GENERATORS

Extraction = Literal["gsm8k", "last_number", "regex", "none"]


class GenerationTaskParams(FileTaskParams):
    question_field: str = "question"
    answer_field: str = "answer"
    template: str = "{question}"  # the user turn; {field} is any field of the item
    extract: Extraction = "last_number"
    pattern: str | None = None  # extract: regex; its first group (or the whole match) is the answer
    reference_extract: Literal["auto", "gsm8k", "none"] = "auto"  # auto: gsm8k where the reference has '####'
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 128}


def render(template: str, row: dict, where: str) -> str:
    """``template`` with each ``{field}`` replaced by the item's value (a one-line error naming
    the item when it lacks one)."""
    try:
        return template.format_map(row)
    except KeyError as e:
        raise ValueError(f"{where}: the task's template needs field {e.args[0]!r}; this item has "
                         f"{', '.join(sorted(row))}") from None


def reference_answer(reference: str, how: str) -> str:
    if how == "auto":
        how = "gsm8k" if "####" in reference else "none"
    return extract(reference, how)


@TASKS.register("generation", GenerationTaskParams)
class GenerationTask(EvalTask):
    """Greedy answers scored by extracted-answer accuracy and ROUGE-L."""

    def __init__(self, params):
        super().__init__(params)
        if params.extract == "regex" and not params.pattern:
            raise ValueError(f"eval task {self.label}: extract: regex needs a pattern")

    def run(self, evaluator, items):
        p = self.params
        table = self.table()
        questions = [render(p.template, {p.question_field: field(row, p.question_field, where), **row}, where)
                     for row, where in zip(table.rows, table.where)]
        references = [str(field(row, p.answer_field, where)) for row, where in zip(table.rows, table.where)]
        answers = evaluator.generator(p.generation).generate([evaluator.conversation(q) for q in questions])
        records = []
        for q, ref, ans, where in zip(questions, references, answers, table.where):
            predicted, target = extract(ans, p.extract, p.pattern), reference_answer(ref, p.reference_extract)
            records.append({"where": where, "prompt": q, "answer": ans, "extracted": predicted, "reference": target,
                            "correct": matches(predicted, target), "rouge_l": rouge_l(ref, ans)})
        items.write(records)
        n = len(records)
        return {"accuracy": sum(r["correct"] for r in records) / n, "rouge_l": sum(r["rouge_l"] for r in records) / n,
                "invalid": sum(r["extracted"] == "[invalid]" for r in records), "n": n}
