"""The ``judge`` task: an LLM judge grades the model's answers to open questions, MT-Bench style
(Zheng et al., NeurIPS 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena").

Open-ended answers have no single right string, so exact match and ROUGE say little about them;
MT-Bench showed that a strong LLM judge agrees with human preferences about as well as humans
agree with each other. The model answers each item's question (``template``, through the chat
template with the run's system prompt, as in training) and the judge reads it, in one of
MT-Bench's two modes:

- ``single``: the judge grades one answer from 1 to 10 and writes ``Rating: [[N]]``; the grade is
  the first ``[[N]]`` in its output (else the first ``[N]``, as MT-Bench falls back), decimals
  allowed, and only 1 ≤ N ≤ 10 counts. ``score`` is the mean grade. A prompt with ``{reference}``
  is shown the item's ``reference_field`` (reference-guided grading, MT-Bench's math prompt).
- ``pairwise``: the judge compares the model's answer with the item's reference answer and says
  ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). LLM judges favour a position, so each item is judged
  twice, the model's answer first as A and then as B; as in MT-Bench with swapping, a win or a
  loss counts only when both orders agree, and two orders that disagree make a tie, also counted
  in ``inconsistent`` (the judge's position bias, visible on its own).

Our choices: the built-in prompts (``eval/prompts/judge_single.txt``, ``judge_pairwise.txt``) are
our wording in MT-Bench's shape, but ask for the verdict first and the reasons after, so a short
``judge.max_new_tokens`` still ends in a verdict; ``prompt`` points at your own file. An output
with no verdict (or an out-of-range grade; in pairwise, either order unparsed) is left out of
``score`` and the rates but counted in ``unparsed``, never silently dropped; ``n`` counts every
item. The default judge — the run's own base model with its adapter switched off — only keeps the
task runnable offline: set ``judge`` to a real judge model (``backend: openai`` for a served one,
or ``local`` with ``model``). Every item's question, answer, reference, the judge's raw output(s)
and the parsed verdict go to the task's item file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from fedtune.eval.tasks import TASKS, EvalTask, QuestionTaskParams, field, questions
from fedtune.schema import ConfigError
from fedtune.synth.generation import GENERATORS

PROMPTS = Path(__file__).parent / "prompts"
BUILT_IN_PROMPT = {"single": PROMPTS / "judge_single.txt", "pairwise": PROMPTS / "judge_pairwise.txt"}
NEEDS = {"single": ("question", "answer"), "pairwise": ("question", "answer_a", "answer_b")}
PLACEHOLDER = re.compile(r"\{(question|answer|answer_a|answer_b|reference)\}")
NO_REFERENCE = "(no reference answer given)"

RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
RATING_FALLBACK = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")

Outcome = Literal["win", "tie", "loss"]


class JudgeTaskParams(QuestionTaskParams):
    mode: Literal["single", "pairwise"] = "single"
    # pairwise: the answer the model is compared with; single: shown where the prompt has {reference}
    reference_field: str = "answer"
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 128}  # the model's answers
    # the judge; default: the run's own base model with the adapter off (runnable offline, not a real judge)
    judge: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 32}
    prompt: str | None = None  # a file with the mode's placeholders; None = the built-in one


def parse_rating(text: str) -> float | None:
    """The grade in a single-answer judgment: the first ``[[N]]`` (else the first ``[N]``), if
    1 ≤ N ≤ 10; None when there is none or it is out of range."""
    m = RATING.search(text) or RATING_FALLBACK.search(text)
    if m is None:
        return None
    value = float(m.group(1))
    return value if 1 <= value <= 10 else None


def parse_verdict(text: str) -> str | None:
    """The first ``[[A]]``, ``[[B]]`` or ``[[C]]`` in a pairwise judgment ("A", "B", "C"), or None."""
    m = VERDICT.search(text)
    return None if m is None else m.group(1)


def outcome(verdict: str | None, model_slot: str) -> Outcome | None:
    """A verdict in the model's terms, its answer being in ``model_slot`` ("A" or "B")."""
    if verdict is None:
        return None
    if verdict == "C":
        return "tie"
    return "win" if verdict == model_slot else "loss"


def combine(model_as_a: Outcome | None, model_as_b: Outcome | None) -> tuple[Outcome | None, bool]:
    """(the item's outcome, whether the two orders disagreed): a win or a loss only when both
    orders agree, a tie when they disagree; None when either order has no verdict."""
    if model_as_a is None or model_as_b is None:
        return None, False
    if model_as_a == model_as_b:
        return model_as_a, False
    return "tie", True


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with its placeholders replaced in one pass (an answer that happens to contain
    ``{reference}`` stays as it is)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@TASKS.register("judge", JudgeTaskParams)
class JudgeTask(EvalTask):
    """The model's answers graded (single) or compared with the reference (pairwise) by an LLM judge."""

    def __init__(self, params):
        super().__init__(params)
        path = Path(params.prompt) if params.prompt else BUILT_IN_PROMPT[params.mode]
        if not path.is_file():
            raise ConfigError(f"eval task {self.label}: prompt {path} does not exist")
        self.template = path.read_text(encoding="utf-8")
        for name in NEEDS[params.mode]:
            if "{" + name + "}" not in self.template:
                needs = ", ".join("{" + n + "}" for n in NEEDS[params.mode])
                raise ConfigError(f"eval task {self.label}: prompt {path} has no {{{name}}} placeholder "
                                  f"(a {params.mode} prompt needs {needs})")
        judge = params.judge
        # the run's own model judges as the base model; any other judge is used as it is
        self.judge_adapter = not (judge.backend == "local" and judge.model is None)

    def run(self, evaluator, items):
        p = self.params
        table = self.table(evaluator)
        asked, references = questions(table, p), []
        for row, where in zip(table.rows, table.where):
            if p.mode == "pairwise":
                references.append(str(field(row, p.reference_field, where)))
            else:
                reference = row.get(p.reference_field)
                references.append(None if reference is None else str(reference))
        answers = evaluator.generator(p.generation).generate([evaluator.conversation(q) for q in asked])
        judge = evaluator.generator(p.judge)
        if p.mode == "single":
            records = self._single(judge, table.where, asked, answers, references)
            items.write(records)
            parsed = [r["rating"] for r in records if r["rating"] is not None]
            return {"score": sum(parsed) / len(parsed) if parsed else None,
                    "unparsed": len(records) - len(parsed), "n": len(records)}
        records = self._pairwise(judge, table.where, asked, answers, references)
        items.write(records)
        decided = [r["outcome"] for r in records if r["outcome"] is not None]

        def rate(kind):
            return decided.count(kind) / len(decided) if decided else None

        return {"win_rate": rate("win"), "tie_rate": rate("tie"), "loss_rate": rate("loss"),
                "inconsistent": sum(r["inconsistent"] for r in records),
                "unparsed": len(records) - len(decided), "n": len(records)}

    def _ask(self, judge, prompts: list[str]) -> list[str]:
        return judge.generate([[{"role": "user", "content": t}] for t in prompts], use_adapter=self.judge_adapter)

    def _single(self, judge, wheres, questions, answers, references) -> list[dict]:
        prompts = [fill(self.template, {"question": q, "answer": a, "reference": NO_REFERENCE if r is None else r})
                   for q, a, r in zip(questions, answers, references)]
        outputs = self._ask(judge, prompts)
        return [{"where": w, "question": q, "answer": a, "reference": r, "judge_output": o, "rating": parse_rating(o)}
                for w, q, a, r, o in zip(wheres, questions, answers, references, outputs)]

    def _pairwise(self, judge, wheres, questions, answers, references) -> list[dict]:
        prompts = []
        for q, a, r in zip(questions, answers, references):  # each item twice: the model's answer as A, then as B
            prompts.append(fill(self.template, {"question": q, "answer_a": a, "answer_b": r, "reference": r}))
            prompts.append(fill(self.template, {"question": q, "answer_a": r, "answer_b": a, "reference": r}))
        outputs = self._ask(judge, prompts)
        records = []
        for i, (w, q, a, r) in enumerate(zip(wheres, questions, answers, references)):
            first, second = outputs[2 * i], outputs[2 * i + 1]
            verdicts = {"model_as_a": parse_verdict(first), "model_as_b": parse_verdict(second)}
            result, inconsistent = combine(outcome(verdicts["model_as_a"], "A"), outcome(verdicts["model_as_b"], "B"))
            records.append({"where": w, "question": q, "answer": a, "reference": r,
                            "judge_outputs": {"model_as_a": first, "model_as_b": second},
                            "verdicts": verdicts, "outcome": result, "inconsistent": inconsistent})
        return records
