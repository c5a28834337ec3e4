"""Every record format becomes the right SFT or preference record."""

from __future__ import annotations

import pytest

from fedtune.data.formats import detect_format, parse_hh_dialogue, to_record
from fedtune.data.records import RecordError

U, A, S = "user", "assistant", "system"


def _msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_sharegpt_multi_turn_keeps_every_turn_and_maps_roles():
    row = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                             {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "Bye"},
                             {"from": "gpt", "value": "Goodbye"}]}
    assert detect_format(row, "w") == "sharegpt"
    rec = to_record(row, "sharegpt", "sft", "w")
    assert rec["messages"] == _msgs((S, "Be brief."), (U, "Hi"), (A, "Hello"), (U, "Bye"), (A, "Goodbye"))


def test_openai_messages_and_question_answer():
    row = {"messages": _msgs((U, "2+2?"), (A, "4")), "category": 7}
    assert to_record(row, detect_format(row, "w"), "sft", "w") == {"messages": row["messages"], "category": "7"}
    qa = {"question": "How many?", "answer": "3 + 4 = 7\n#### 7"}
    assert detect_format(qa, "w") == "question-answer"
    assert to_record(qa, "question-answer", "sft", "w")["messages"] == _msgs((U, "How many?"), (A, "3 + 4 = 7\n#### 7"))


def test_instruction_response_is_fedllm_bench_single_turn():
    row = {"instruction": "Say hi", "response": "hi"}
    assert detect_format(row, "w") == "instruction-response"
    assert to_record(row, "instruction-response", "sft", "w")["messages"] == _msgs((U, "Say hi"), (A, "hi"))


def test_preference_with_string_prompt():
    row = {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"}
    rec = to_record(row, detect_format(row, "w"), "preference", "w")
    assert rec == {"prompt": _msgs((U, "Capital of France?")), "chosen": "Paris", "rejected": "Rome", "category": ""}


def test_preference_as_conversations_with_and_without_the_prompt_turns():
    prompt = _msgs((U, "Hi"), (A, "Hello"), (U, "Capital of France?"))
    short = {"prompt": prompt, "chosen": _msgs((A, "Paris")), "rejected": _msgs((A, "Rome"))}
    whole = {"prompt": prompt, "chosen": prompt + _msgs((A, "Paris")), "rejected": prompt + _msgs((A, "Rome"))}
    for row in (short, whole):
        rec = to_record(row, "preference", "preference", "w")
        assert (rec["prompt"], rec["chosen"], rec["rejected"]) == (prompt, "Paris", "Rome")
    bad = {"prompt": prompt, "chosen": _msgs((U, "Other"), (A, "Paris")), "rejected": _msgs((A, "Rome"))}
    with pytest.raises(RecordError, match="'chosen' repeats turns that differ from 'prompt'"):
        to_record(bad, "preference", "preference", "w")


def test_hh_rlhf_dialogues_split_into_prompt_and_answers():
    chosen = "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour and water.\n\nHuman: Then?\n\nAssistant: Knead it."
    rejected = "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour and water.\n\nHuman: Then?\n\nAssistant: Go away."
    row = {"chosen": chosen, "rejected": rejected}
    assert detect_format(row, "w") == "hh-rlhf"
    rec = to_record(row, "hh-rlhf", "preference", "w")
    assert rec["prompt"] == _msgs((U, "How do I bake bread?"), (A, "Mix flour and water."), (U, "Then?"))
    assert (rec["chosen"], rec["rejected"]) == ("Knead it.", "Go away.")
    # the same pair read for SFT trains on the chosen answer
    assert to_record(row, "hh-rlhf", "sft", "w")["messages"][-1] == {"role": A, "content": "Knead it."}


def test_hh_rlhf_pairs_that_do_not_share_the_prompt_are_errors():
    row = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: other\n\nAssistant: c"}
    with pytest.raises(RecordError, match="differ before their last assistant turn"):
        to_record(row, "hh-rlhf", "preference", "w")
    with pytest.raises(RecordError, match="is not a"):
        parse_hh_dialogue("no speaker markers at all", "w", "chosen")
