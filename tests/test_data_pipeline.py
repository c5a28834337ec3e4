"""Processing ops: hand-computed statistics, dedup, the difficulty hook and IFD against a direct
computation with the model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fedtune.data.config import DataConfig
from fedtune.data.ops.alnum_ratio import alnum_ratio
from fedtune.data.ops.char_repetition import char_repetition_ratio
from fedtune.data.ops.difficulty import SCORERS, ScoringContext, ifd, register_scorer
from fedtune.data.ops.flagged_words import builtin_flagged_words, flagged_ratio
from fedtune.data.ops.pipeline import run_pipeline
from fedtune.data.sources import DataError


def sft(q: str, a: str, category: str = "") -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "category": category}


def ops(*specs):
    return DataConfig(pipeline=list(specs)).pipeline


def test_text_statistics_by_hand():
    assert alnum_ratio("ab c!") == pytest.approx(3 / 5)
    # "aaaaaa" with rep_len 2: five "aa" grams, all the same -> top sqrt(1)=1 gram covers 5/5
    assert char_repetition_ratio("aaaaaa", 2) == 1.0
    # "abcabc" rep_len 3: grams abc, bca, cab, abc -> freqs [2,1,1]; unique=2, top=min(int(sqrt(3)), 1)=1 -> 2/4
    assert char_repetition_ratio("abcabc", 3) == pytest.approx(0.5)
    assert char_repetition_ratio("abcdef", 3) == 0.0  # nothing repeats
    assert flagged_ratio("You BASTARD, go away now", {"bastard"}) == pytest.approx(1 / 5)


def test_exact_dedup_ignores_case_and_whitespace_keeps_first():
    records = [sft("Hello  world", "x"), sft("hello world", "X"), sft("hello world", "y")]
    kept, rows = run_pipeline(records, ops({"op": "exact_dedup"}), "c0")
    assert kept == [records[0], records[2]]
    assert rows == [{"client": "c0", "step": "exact_dedup", "kept": 2, "dropped": 1}]


def test_near_dedup_drops_a_one_word_edit_keeps_different_text():
    base = " ".join(f"word{i}" for i in range(60))
    edited = base.replace("word30", "changed")
    other = " ".join(f"other{i}" for i in range(60))
    kept, rows = run_pipeline([sft(base, "a"), sft(edited, "a"), sft(other, "a")], ops({"op": "near_dedup"}), "c")
    assert [r["messages"][0]["content"] for r in kept] == [base, other]
    assert rows[0]["dropped"] == 1


def test_filters_in_order_each_counted():
    records = [sft("What is the capital of France?", "Paris."),  # kept
               sft("!!!! ???? ....", "@@@@ ####"),              # alnum ratio ~0
               sft("Say it", "ha" * 40),                        # repetitive
               sft("Insult me", "you bastard"),                 # flagged
               sft("Hi", "Yo")]                                  # too short
    pipeline = ops({"op": "length", "min": 8}, {"op": "alnum_ratio", "min": 0.5},
                   {"op": "char_repetition", "rep_len": 4, "max": 0.5},
                   {"op": "flagged_words", "words": ["bastard"], "max_ratio": 0.0})
    kept, rows = run_pipeline(records, pipeline, "c")
    assert kept == records[:1]
    assert [(r["step"], r["kept"], r["dropped"]) for r in rows] == [
        ("length", 4, 1), ("alnum_ratio", 3, 1), ("char_repetition", 2, 1), ("flagged_words", 1, 1)]


def test_builtin_flagged_words_and_words_file(tmp_path):
    assert "bastard" in builtin_flagged_words()
    words = tmp_path / "w.txt"
    words.write_text("zorblax\n")
    kept, _ = run_pipeline([sft("hello", "zorblax"), sft("hello", "fine")],
                           ops({"op": "flagged_words", "words": [], "words_file": str(words)}), "c")
    assert len(kept) == 1
    with pytest.raises(DataError, match="words_file: .* not found"):
        run_pipeline([sft("a", "b")], ops({"op": "flagged_words", "words_file": str(tmp_path / "none")}), "c")


def test_model_ops_need_a_context():
    with pytest.raises(DataError, match="token_length: needs the model's tokenizer"):
        run_pipeline([sft("a", "b")], ops({"op": "token_length", "max": 10}), "c")


def test_difficulty_hook_with_a_registered_scorer_and_keep_fraction():
    @register_scorer("answer-length")
    def answer_length(records, ctx):
        return [float(len(r["messages"][-1]["content"])) for r in records]

    try:
        records = [sft("q", "a" * n) for n in (3, 9, 1, 7, 5)]
        kept, rows = run_pipeline(records, ops({"op": "difficulty", "scorer": "answer-length", "keep_fraction": 0.4}),
                                  "c", context=lambda: ScoringContext(None, None, 64, None))
        assert [len(r["messages"][-1]["content"]) for r in kept] == [9, 7]
        kept, _ = run_pipeline(records, ops({"op": "difficulty", "scorer": "answer-length", "min": 4, "max": 8}),
                               "c", context=lambda: ScoringContext(None, None, 64, None))
        assert [len(r["messages"][-1]["content"]) for r in kept] == [7, 5]
    finally:
        SCORERS.pop("answer-length")
    with pytest.raises(DataError, match="unknown scorer 'nope'"):
        run_pipeline(records, ops({"op": "difficulty", "scorer": "nope"}), "c",
                     context=lambda: ScoringContext(None, None, 64, None))


def _mean_answer_ce(model, ids: list[int], answer_start: int) -> float:
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    return F.cross_entropy(logits[answer_start - 1:-1], torch.tensor(ids[answer_start:])).item()


def test_ifd_equals_direct_computation(tiny):
    """IFD = mean CE(answer | instruction) / mean CE(answer alone), computed here from raw logits."""
    tok = tiny.tokenizer
    record = sft("Repeat the word apple.", "apple apple")
    ctx = ScoringContext(tiny.model, tok, 128, None)
    [score] = ifd([record], ctx)

    prompt = tok.apply_chat_template(record["messages"][:1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(record["messages"], tokenize=False)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    answer_end = len(tok(prompt + "apple apple", add_special_tokens=False)["input_ids"])
    # the labels cover the answer and the end-of-turn token that follows it
    eot = len(tok(prompt + "apple apple<|im_end|>", add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        cond = _mean_answer_ce(tiny.model, full_ids[:eot], len(prompt_ids))
        answer = tok("apple apple", add_special_tokens=False)["input_ids"]
        alone = _mean_answer_ce(tiny.model, answer, 1)
    assert answer_end < eot <= len(full_ids)
    assert score == pytest.approx(cond / alone, rel=1e-4)
    assert math.isfinite(score) and score > 0
