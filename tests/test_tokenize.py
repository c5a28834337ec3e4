"""Completion-only labels found by rendering work for any template; truncation is counted."""

from fedtune.data.chat_templates import TEMPLATES
from fedtune.data.tokenize import IGNORE, tokenize_sft


def _labelled_text(tok, ids, labels):
    return tok.decode([t for t, l in zip(ids, labels) if l != IGNORE])


def test_labels_cover_each_assistant_turn(smollm2_tokenizer):
    tok = smollm2_tokenizer
    rec = {"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"},
    ]}
    ts = tokenize_sft([rec], tok, 256, "Be brief.")
    assert _labelled_text(tok, ts.input_ids[0], ts.labels[0]) == "hello there<|im_end|>ciao<|im_end|>"
    text = tok.decode(ts.input_ids[0])
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_named_template_without_llama_slicing(smollm2_tokenizer):
    tok = smollm2_tokenizer
    saved = tok.chat_template
    try:
        tok.chat_template = TEMPLATES["alpaca"]
        ts = tokenize_sft([{"messages": [{"role": "user", "content": "Add 2 and 3"},
                                         {"role": "assistant", "content": "5"}]}], tok, 256)
        assert _labelled_text(tok, ts.input_ids[0], ts.labels[0]) == "5" + tok.eos_token
    finally:
        tok.chat_template = saved


def test_truncation_counted_and_fully_cut_responses_dropped(smollm2_tokenizer):
    long_prompt = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a " * 50}]}
    ts = tokenize_sft([long_prompt, short], smollm2_tokenizer, 32)
    assert ts.truncated == 2
    assert ts.dropped == [0]  # the first lost its whole response; the second keeps part of it
    assert len(ts) == 1 and len(ts.input_ids[0]) == 32
