"""The ``calibration`` task: does the model know when it is right? Two confidences per question,
each held against whether the model's answer is correct, as CONQORD evaluates it (Tao et al.,
2024, *When to Trust LLMs: Aligning Confidence with Response Quality*, arXiv 2404.17287; code
``TaoShuchang/CONQORD`` @ 7391fbb) — the figures a confidence-alignment method must move, and
the ones that tell whether federated fine-tuning left the model over- or under-confident.

* ``verbalized`` — the model is asked for an answer and a stated confidence, in CONQORD's
  few-shot shape (``eval/prompts/conqord_confidence.txt``: its instruction, ``### Question: …
  ### Answer: … ### Confidence: 0.9.`` examples of our own, then the item's question). The
  output is cut where the model goes on to a new ``### Question`` (as CONQORD cuts it); the
  confidence is the first ``### Confidence: ([0-9]*\\.?[0-9]+)`` (CONQORD's training regex; its
  evaluation one, ``(\\d\\.\\d)``, misses ``1`` or ``.85``), clipped to [0, 1]. A missing
  confidence counts as **0.0** — CONQORD's evaluation default (``gpt_evaluation.py``), not its
  training one (1.0, ``extract_confidence``): an unstated confidence is no claim to be right —
  and is counted (``confidence_missing``). The answer is the text before ``### Confidence``
  (after a ``### Answer:`` the model wrote).
* ``token`` — the model answers the plain question (``template`` with the run's system prompt,
  as the ``generation`` task asks it), and the confidence is the geometric-mean probability of
  that answer's tokens given the prompt, exp(mean token log-prob), teacher-forced on the answer
  text re-tokenized (the generator returns text). The mean, not the sum: a sequence probability
  falls with every token, so longer answers would look less sure whatever their quality. An
  empty answer has no tokens to score: it is left out of the token figures (``token_unscored``).

Correctness is the ``generation`` task's: the answer extracted (``extract``) equals the reference
(``reference_extract``), the same way for both kinds (each kind on its own answer). Figures, per
kind (``verbalized_*``, ``token_*``): ``accuracy``, ``mean_confidence``, ``ece`` (10 equal-width
bins), ``pearson``/``spearman`` with ``*_p`` (None when a side is constant),
``order_preservation`` (CONQORD's sign-form score, normalised; ``calibration_metrics``); and
``confidence_missing``, ``token_unscored``, ``n``. Every item goes to the task's item file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from fedtune.data.tokenize import tokenize_prompts
from fedtune.eval.answer_extraction import extract, matches
from fedtune.eval.calibration_metrics import ece, order_preservation, pearson, spearman
from fedtune.eval.generation_task import (
    AnswerTask,
    AnswerTaskParams,
    Extraction,
    reference_answer,
)
from fedtune.eval.tasks import TASKS, field, questions
from fedtune.models.logprobs import IGNORE, mean_response_ce
from fedtune.schema import ConfigError
from fedtune.synth.generation import GENERATORS

BUILT_IN_PROMPT = Path(__file__).parent / "prompts" / "conqord_confidence.txt"
CONFIDENCE = re.compile(r"### Confidence: ([0-9]*\.?[0-9]+)")  # CONQORD's (utils/data/data_utils.py)
NEXT_QUESTION = re.compile(r"\n\s*### Question")  # the model continuing the few-shot pattern
ANSWER_TAG = "### Answer:"
MISSING_CONFIDENCE = 0.0  # CONQORD's evaluation default (its training default is 1.0)
BINS = 10


class CalibrationTaskParams(AnswerTaskParams):
    extract: Extraction = "none"  # the whole answer (short factual QA); the generation task defaults to last_number
    confidence_prompt: str | None = None  # a file with {question}; None = the built-in CONQORD-shaped one
    # both answers are generated with it (greedy by default); the token confidence scores the
    # run's own model, so the backend is local on that model
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 64}
    batch_size: int = 8  # sequences per forward pass when scoring the token confidence


def parse_verbalized(text: str) -> tuple[str, float | None]:
    """(answer, confidence clipped to [0, 1] or None when none is stated) of a verbalized output."""
    cut = NEXT_QUESTION.search(text, 1)
    text = text[: cut.start()] if cut else text
    m = CONFIDENCE.search(text)
    confidence = min(max(float(m.group(1)), 0.0), 1.0) if m else None
    answer = text.split("### Confidence")[0]
    if ANSWER_TAG in answer:
        answer = answer.rsplit(ANSWER_TAG, 1)[1]
    return answer.strip(), confidence


def figures(kind: str, confidences: list[float], correct: list[bool]) -> dict:
    """One kind's figures (``{kind}_accuracy``, ``_mean_confidence``, ``_ece``, ``_pearson`` and
    ``_pearson_p``, ``_spearman`` and ``_spearman_p``, ``_order_preservation``)."""
    y = [float(c) for c in correct]
    out = {"accuracy": sum(y) / len(y) if y else None,
           "mean_confidence": sum(confidences) / len(confidences) if confidences else None,
           "ece": ece(confidences, y, BINS)}
    for name, fn in (("pearson", pearson), ("spearman", spearman)):
        r = fn(confidences, y)
        out[name], out[f"{name}_p"] = r if r is not None else (None, None)
    out["order_preservation"] = order_preservation(confidences, y)
    return {f"{kind}_{k}": v for k, v in out.items()}


@TASKS.register("calibration", CalibrationTaskParams)
class CalibrationTask(AnswerTask):
    """Verbalized and token-probability confidence against answer correctness (CONQORD's figures)."""

    def __init__(self, params):
        super().__init__(params)
        g = params.generation
        if g.backend != "local" or getattr(g, "model", None) is not None or getattr(g, "adapter", None) is not None:
            raise ConfigError(f"eval task {self.label}: the token confidence scores the run's own model, so "
                              "generation must be the local backend on it (no generation.model/adapter)")
        path = Path(params.confidence_prompt) if params.confidence_prompt else BUILT_IN_PROMPT
        if not path.is_file():
            raise ConfigError(f"eval task {self.label}: confidence_prompt {path} does not exist")
        self.confidence_template = path.read_text(encoding="utf-8")
        if "{question}" not in self.confidence_template:
            raise ConfigError(f"eval task {self.label}: confidence_prompt {path} has no {{question}} placeholder")

    def token_confidences(self, evaluator, conversations: list[list[dict]], answers: list[str]) -> list[float | None]:
        """exp(mean log p(answer token | prompt, earlier answer tokens)) per answer; None for an empty one."""
        tok = evaluator.ws.tokenizer
        prompts = tokenize_prompts([{"prompt": c} for c in conversations], tok)
        answer_ids = [tok(a, add_special_tokens=False)["input_ids"] if a else [] for a in answers]
        scored = [i for i, a in enumerate(answer_ids) if a]
        out: list[float | None] = [None] * len(answers)
        if not scored:
            return out
        ids = [prompts[i] + answer_ids[i] for i in scored]
        labels = [[IGNORE] * len(prompts[i]) + answer_ids[i] for i in scored]
        model = evaluator.ws.model
        was_training = model.training
        model.eval()
        try:
            with evaluator.precision.autocast():
                ce = mean_response_ce(model, ids, labels, evaluator.pad_id, self.params.batch_size)
        finally:
            model.train(was_training)
        for i, loss in zip(scored, ce):
            out[i] = math.exp(-loss)
        return out

    def run(self, evaluator, items):
        p = self.params
        table = self.table(evaluator)
        asked = questions(table, p)
        references = [reference_answer(str(field(row, p.answer_field, where)), p.reference_extract)
                      for row, where in zip(table.rows, table.where)]
        generator = evaluator.generator(p.generation)
        plain = [evaluator.conversation(q) for q in asked]
        with_confidence = [evaluator.conversation(self.confidence_template.replace("{question}", q)) for q in asked]
        answers = generator.generate(plain)
        outputs = generator.generate(with_confidence)
        token = self.token_confidences(evaluator, plain, answers)
        records = []
        for where, q, ref, ans, out, tc in zip(table.where, asked, references, answers, outputs, token):
            stated_answer, stated = parse_verbalized(out)
            extracted = extract(ans, p.extract, p.pattern)
            stated_extracted = extract(stated_answer, p.extract, p.pattern)
            records.append({"where": where, "prompt": q, "reference": ref,
                            "answer": ans, "extracted": extracted, "correct": matches(extracted, ref),
                            "token_confidence": tc,
                            "verbalized_output": out, "verbalized_answer": stated_answer,
                            "verbalized_extracted": stated_extracted,
                            "verbalized_correct": matches(stated_extracted, ref),
                            "verbalized_confidence": stated, "confidence_missing": stated is None})
        items.write(records)
        verbalized = [r["verbalized_confidence"] if r["verbalized_confidence"] is not None else MISSING_CONFIDENCE
                      for r in records]
        scored = [r for r in records if r["token_confidence"] is not None]
        return {**figures("verbalized", verbalized, [r["verbalized_correct"] for r in records]),
                **figures("token", [r["token_confidence"] for r in scored], [r["correct"] for r in scored]),
                "confidence_missing": sum(r["confidence_missing"] for r in records),
                "token_unscored": len(records) - len(scored), "n": len(records)}
