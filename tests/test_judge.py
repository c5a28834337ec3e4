"""The ``judge`` eval task (MT-Bench-style, docs/evaluation.md): its parsing of grades and
verdicts by hand, the position-swap combination with a real chat-completions server on 127.0.0.1
as the judge (a fair judge and a position-biased one), and a training run whose final evaluation
grades the tiny model's answers — with a served judge and with the default one (the run's own
base model) — down to the item file."""

from __future__ import annotations

import json

import pytest
from chat_server import ChatServer
from conftest import metrics_rows, run_config

from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.eval.evaluator import Evaluator
from fedtune.eval.judge import (
    BUILT_IN_PROMPT,
    NO_REFERENCE,
    combine,
    fill,
    outcome,
    parse_rating,
    parse_verdict,
)
from fedtune.eval.tasks import TASKS
from fedtune.schema import ConfigError
from fedtune.synth.generation import GENERATORS, build_generator

ITEMS = [{"question": f"Question q{i}: what is {i} plus {i}?", "answer": f"REF{i}: it is {2 * i}."} for i in range(1, 5)]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))


def without_seconds(tasks: dict) -> dict:
    """Each task's figures without the time it took (which the Evaluator adds)."""
    return {label: {k: v for k, v in figures.items() if k != "seconds"} for label, figures in tasks.items()}


def write_items(tmp_path, rows=ITEMS):
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read_items(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ratings_and_verdicts_parsed_by_hand():
    assert parse_rating("Rating: [[7]]\nClear and correct.") == 7
    assert parse_rating("Rating: [[ 8.5 ]] mostly right") == 8.5
    assert parse_rating("Rating: [[10]]") == 10 and parse_rating("[[1]]") == 1
    assert parse_rating("Rating: [[11]]") is None and parse_rating("Rating: [[0]]") is None  # out of range
    assert parse_rating("Rating: [[0.5]]") is None
    assert parse_rating("Rating: [[11]] or maybe [6]") is None  # a [[N]] is the grade, even out of range
    assert parse_rating("Rating: [6]") == 6  # the single-bracket fallback
    assert parse_rating("Rating: [[3]] (not [9])") == 3  # [[N]] first
    assert parse_rating("I would give it a seven.") is None and parse_rating("Rating: [[N]]") is None
    assert parse_rating("Rating: [[7/10]]") is None and parse_rating("") is None
    assert parse_verdict("[[A]]\nA is correct.") == "A" and parse_verdict("Verdict: [[ C ]]") == "C"
    assert parse_verdict("[[B]] — A gets the sum wrong, unlike [[A]]'s claim") == "B"  # the first one
    assert parse_verdict("A is better") is None and parse_verdict("[A]") is None and parse_verdict("[[D]]") is None


def test_position_swap_combination_by_hand():
    assert [outcome(v, "A") for v in ("A", "B", "C", None)] == ["win", "loss", "tie", None]
    assert [outcome(v, "B") for v in ("A", "B", "C", None)] == ["loss", "win", "tie", None]
    assert combine("win", "win") == ("win", False) and combine("loss", "loss") == ("loss", False)
    assert combine("tie", "tie") == ("tie", False)
    assert combine("win", "loss") == ("tie", True) and combine("tie", "win") == ("tie", True)  # orders disagree
    assert combine(None, "win") == (None, False) and combine("loss", None) == (None, False)


def test_a_prompt_without_the_modes_placeholders_is_a_one_line_config_error(tmp_path):
    prompt = tmp_path / "mine.txt"
    prompt.write_text("Q: {question}\nA: {answer_a}\nWhich is better?")
    params = TASKS.config("judge", path="x.jsonl", mode="pairwise", prompt=str(prompt))
    with pytest.raises(ConfigError, match=r"eval task judge_x: prompt .*mine.txt has no \{answer_b\} placeholder"):
        TASKS["judge"].target(params)
    with pytest.raises(ConfigError, match="does not exist"):
        TASKS["judge"].target(TASKS.config("judge", path="x.jsonl", prompt=str(tmp_path / "none.txt")))


def reference_in(text: str) -> str:
    return next(r["answer"] for r in ITEMS if r["answer"] in text)


def fair(text: str) -> str:
    """A judge that always prefers the model's answer (wherever it sits), calls q3 a tie and
    gives no verdict on q4."""
    if "q4" in text:
        return "I cannot decide between them."
    if "q3" in text:
        return "[[C]] Equally good."
    slot_b = text.index("### Assistant B's answer")
    return "[[B]] B is better." if text.index(reference_in(text)) < slot_b else "[[A]] A is better."


def test_pairwise_wins_need_both_orders_and_a_position_biased_judge_only_ties(tmp_path, loaded):
    fair_server, biased_server = ChatServer(fair), ChatServer(lambda text: "[[A]] The first answer is better.")
    path = write_items(tmp_path)
    answers = {"backend": "local", "max_new_tokens": 6}
    tasks = [{"type": "judge", "name": name, "path": path, "mode": "pairwise", "generation": answers,
              "judge": {"backend": "openai", "base_url": server.url, "model": "judge", "concurrency": 2}}
             for name, server in (("fair", fair_server), ("biased", biased_server))]
    try:
        cfg = run_config(tmp_path, "r", **{"eval.tasks": tasks})
        evaluator = Evaluator(cfg, build_workspace(cfg, loaded), None, items_dir=tmp_path / "items")
        figures = without_seconds(evaluator.run_tasks(None))
    finally:
        fair_server.close()
        biased_server.close()
    assert figures["fair"] == {"win_rate": 2 / 3, "tie_rate": 1 / 3, "loss_rate": 0.0, "inconsistent": 0,
                               "unparsed": 1, "n": 4}
    assert figures["biased"] == {"win_rate": 0.0, "tie_rate": 1.0, "loss_rate": 0.0, "inconsistent": 4,
                                 "unparsed": 0, "n": 4}
    # each item asked twice, the reference once in each slot
    for server in (fair_server, biased_server):
        assert len(server.requests) == 8
        for item in ITEMS:
            asked = [t for t in server.requests if item["question"] in t]
            slots = sorted(t.index(item["answer"]) > t.index("### Assistant B's answer") for t in asked)
            assert slots == [False, True]
    fair_items = read_items(tmp_path / "items" / "fair" / "final.jsonl")
    assert [r["outcome"] for r in fair_items] == ["win", "win", "tie", None]
    assert fair_items[0]["judge_outputs"] == {"model_as_a": "[[A]] A is better.", "model_as_b": "[[B]] B is better."}
    assert fair_items[0]["verdicts"] == {"model_as_a": "A", "model_as_b": "B"}
    assert fair_items[3]["judge_outputs"]["model_as_a"] == "I cannot decide between them."
    assert [r["reference"] for r in fair_items] == [r["answer"] for r in ITEMS]
    assert all(isinstance(r["answer"], str) and r["question"] == q["question"] for r, q in zip(fair_items, ITEMS))
    biased_items = read_items(tmp_path / "items" / "biased" / "final.jsonl")
    assert all(r["outcome"] == "tie" and r["inconsistent"] for r in biased_items)
    assert biased_items[0]["verdicts"] == {"model_as_a": "A", "model_as_b": "A"}
    assert [r["answer"] for r in biased_items] == [r["answer"] for r in fair_items]  # the same model answers


def grader(text: str) -> str:
    """A judge that grades by question (q3 out of range, q4 no grade) and checks the reference."""
    shown = "reference shown" if "REFERENCE: REF" in text else "no reference"
    return {"q1": f"Rating: [[7]] ({shown})", "q2": f"Rating: [[9.5]] ({shown})",
            "q3": "Rating: [[11]]", "q4": "It is fine."}[next(q for q in ("q1", "q2", "q3", "q4") if q in text)]


def test_a_run_grades_its_answers_with_a_served_judge_and_with_its_own_base_model(tmp_path, loaded):
    rows = [*ITEMS[:3], {"question": ITEMS[3]["question"]}]  # q4 has no reference answer
    path = write_items(tmp_path, rows)
    prompt = tmp_path / "graded.txt"
    prompt.write_text("Grade 1-10 as Rating: [[N]].\nQUESTION: {question}\nANSWER: {answer}\nREFERENCE: {reference}\n")
    server = ChatServer(grader)
    tasks = [{"type": "judge", "name": "served", "path": path, "prompt": str(prompt),
              "template": "Answer briefly. {question}", "generation": {"max_new_tokens": 6},
              "judge": {"backend": "openai", "base_url": server.url, "model": "judge"}},
             {"type": "judge", "name": "own", "path": path, "limit": 2, "generation": {"max_new_tokens": 6},
              "judge": {"max_new_tokens": 8}}]
    try:
        cfg = run_config(tmp_path, "r", **{"federation.rounds": 1, "eval.tasks": tasks})
        run_experiment(cfg, loaded=loaded, progress=False)
    finally:
        server.close()
    evaluated = [r["eval"]["tasks"] for r in metrics_rows(cfg) if "tasks" in r.get("eval", {})]
    assert evaluated, "no metrics row carries the tasks' figures"
    figures = without_seconds(evaluated[-1])
    assert figures["served"] == {"score": 8.25, "unparsed": 2, "n": 4}
    own = figures["own"]
    assert own["n"] == 2 and 0 <= own["unparsed"] <= 2
    assert (own["score"] is None) == (own["unparsed"] == 2)

    (served_file,) = (cfg.run_dir() / "eval" / "served").glob("*.jsonl")
    served = read_items(served_file)
    assert [r["judge_output"] for r in served] == ["Rating: [[7]] (reference shown)", "Rating: [[9.5]] (reference shown)",
                                                   "Rating: [[11]]", "It is fine."]
    assert [r["rating"] for r in served] == [7, 9.5, None, None]
    assert [r["reference"] for r in served] == [r["answer"] for r in ITEMS[:3]] + [None]
    assert [r["question"] for r in served] == [f"Answer briefly. {r['question']}" for r in ITEMS]
    assert all(f"ANSWER: {r['answer']}\n" in t for r, t in zip(served, sorted(server.requests)))
    assert any(f"REFERENCE: {NO_REFERENCE}" in t for t in server.requests)
    (own_file,) = (cfg.run_dir() / "eval" / "own").glob("*.jsonl")
    own_items = read_items(own_file)
    assert len(own_items) == 2 and all(isinstance(r["judge_output"], str) for r in own_items)
    assert sum(r["rating"] is None for r in own_items) == own["unparsed"]
    # the default judge is the run's base model: its adapter (trained for a round) switched off
    assert hasattr(loaded.model, "peft_config")
    base = build_generator(GENERATORS.config("local", max_new_tokens=8, cache=False), loaded.model, loaded.tokenizer)
    template = BUILT_IN_PROMPT["single"].read_text()
    asked = [[{"role": "user", "content": fill(template, {"question": r["question"], "answer": r["answer"]})}]
             for r in own_items]
    assert base.generate(asked, use_adapter=False) == [r["judge_output"] for r in own_items]
