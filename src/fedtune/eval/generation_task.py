"""The ``generation`` task: the model answers each question by greedy generation; the answer is
extracted (``extract``: GSM8K's ``#### N``, the last number, a regex, or the whole text) and
compared with the reference (``accuracy``), and the whole answer is scored by ROUGE-L against it.

This is the fair score for a model that answers in sentences: teacher-forced exact match calls
"The capital is Paris." wrong against "Paris"; extraction does not. Prompts go through the chat
template with the run's system prompt, as in training. The reference is extracted too when it
carries GSM8K's ``#### N`` (``reference_extract: auto``). Every answer, its extraction and its
verdict go to the task's item file. ``engine: lm_eval`` scores the same items through
lm-evaluation-harness instead (``harness_task``: its ``generate_until`` with the same extraction
as a regex filter and the same normalisation as ``exact_match``'s ``regexes_to_ignore``); the two
engines agree item by item (tests/test_eval_tasks.py holds them to it on GSM8K).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedtune.eval.answer_extraction import (
    FLEXIBLE,
    IGNORED,
    INVALID,
    STRICT,
    extract,
    matches,
)
from fedtune.eval.rouge import rouge_l
from fedtune.eval.tasks import TASKS, EvalTask, QuestionTaskParams, field, questions
from fedtune.synth.generation import GENERATORS

Extraction = Literal["gsm8k", "last_number", "regex", "none"]


class AnswerTaskParams(QuestionTaskParams):
    """A task whose answers are extracted and compared with each item's reference."""

    answer_field: str = "answer"
    extract: Extraction = "last_number"
    pattern: str | None = None  # extract: regex; its first group (or the whole match) is the answer
    reference_extract: Literal["auto", "gsm8k", "none"] = "auto"  # auto: gsm8k where the reference has '####'


class GenerationTaskParams(AnswerTaskParams):
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 128}
    engine: Literal["native", "lm_eval"] = "native"  # lm_eval: the same items through lm-evaluation-harness
    harness_batch_size: int = Field(1, ge=1)  # engine lm_eval: its batch size


HARNESS_FILTERS = {  # extraction -> the harness's regex filter (pattern, which match)
    "gsm8k": (STRICT.pattern, 0),
    "last_number": (FLEXIBLE.pattern, -1),
    "none": (r"(?s)\S(?:.*\S)?", 0),  # the stripped text
}


def reference_answer(reference: str, how: str) -> str:
    if how == "auto":
        how = "gsm8k" if "####" in reference else "none"
    return extract(reference, how)


class AnswerTask(EvalTask):
    """Base of the tasks that extract answers (``AnswerTaskParams``)."""

    def __init__(self, params):
        super().__init__(params)
        if params.extract == "regex" and not params.pattern:
            raise ValueError(f"eval task {self.label}: extract: regex needs a pattern")


@TASKS.register("generation", GenerationTaskParams)
class GenerationTask(AnswerTask):
    """Greedy answers scored by extracted-answer accuracy and ROUGE-L."""

    def run(self, evaluator, items):
        p = self.params
        table = self.table(evaluator)
        asked = questions(table, p)
        references = [str(field(row, p.answer_field, where)) for row, where in zip(table.rows, table.where)]
        targets = [reference_answer(ref, p.reference_extract) for ref in references]
        if p.engine == "lm_eval":
            from fedtune.eval.lm_eval_bridge import run_local

            samples = run_local(self, evaluator, [{"question": q, "reference": t} for q, t in zip(asked, targets)])
            answers = [s["resps"][0][0].strip() for s in samples]
            extracted = [s["filtered_resps"][0] for s in samples]
        else:
            answers = evaluator.generator(p.generation).generate([evaluator.conversation(q) for q in asked])
            extracted = [extract(a, p.extract, p.pattern) for a in answers]
        records = []
        for q, ref, target, ans, predicted, where in zip(asked, references, targets, answers, extracted, table.where):
            records.append({"where": where, "prompt": q, "answer": ans, "extracted": predicted, "reference": target,
                            "correct": matches(predicted, target), "rouge_l": rouge_l(ref, ans)})
        items.write(records)
        n = len(records)
        return {"accuracy": sum(r["correct"] for r in records) / n, "rouge_l": sum(r["rouge_l"] for r in records) / n,
                "invalid": sum(r["extracted"] == "[invalid]" for r in records), "n": n}

    def harness_task(self, name: str, data_file: str) -> dict:
        """The equivalent harness task over ``data_file`` (rows: the rendered ``question`` and the
        extracted ``reference``): greedy ``generate_until`` up to the end-of-turn token."""
        p = self.params
        pattern, which = (p.pattern, 0) if p.extract == "regex" else HARNESS_FILTERS[p.extract]
        return {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": data_file}},
                "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{question}}",
                "doc_to_target": "{{reference}}",
                "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": p.generation.max_new_tokens},
                "filter_list": [{"name": p.extract, "filter": [
                    {"function": "regex", "regex_pattern": pattern, "group_select": which, "fallback": INVALID},
                    {"function": "take_first"}]}],
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                 "ignore_case": True, "regexes_to_ignore": [rx.pattern for rx in IGNORED]}]}
