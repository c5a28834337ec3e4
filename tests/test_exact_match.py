"""Teacher-forced exact match must agree with real greedy generation (the oracle)."""

import torch

from fedtune.data.tokenize import tokenize_prompts, tokenize_sft
from fedtune.eval.exact_match import evaluate_sft


def _train_to_memorize(model, tokens, steps=60):
    """Full fine-tuning (embeddings included) memorizes quickly even in a 64-wide model."""
    from fedtune.client.objectives.sft import SFTObjective

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    objective, idx = SFTObjective(), list(range(len(tokens)))
    for _ in range(steps):
        loss, _ = objective.loss(model, tokens, idx, 0)
        (loss / objective.step_weight(tokens, idx)).backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_exact_match_equals_greedy_generation(tiny, monkeypatch):
    tok = tiny.tokenizer
    model = tiny.model
    records = [{"messages": [{"role": "user", "content": f"item {i}"},
                             {"role": "assistant", "content": ans}]} for i, ans in
               enumerate(["red", "blue green", "seven", "alpha beta", "x", "delta", "moon", "sun"])]
    tokens = tokenize_sft(records, tok, 64)
    _train_to_memorize(model, type(tokens)(tokens.input_ids[:5], tokens.labels[:5]))  # learn 5 of 8
    result = evaluate_sft(model, tokens, tok.pad_token_id, batch_size=3)
    # The LM head in chunks of 2 label positions (batches hold more): the same verdicts and loss
    monkeypatch.setattr("fedtune.eval.exact_match.LM_HEAD_CHUNK", 2)
    chunked = evaluate_sft(model, tokens, tok.pad_token_id, batch_size=3)
    assert chunked.correct == result.correct and abs(chunked.loss - result.loss) < 1e-5

    prompts = tokenize_prompts(records, tok)
    generated_ok = []
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for rec, prompt in zip(records, prompts):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                                 eos_token_id=end, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, len(prompt):])
        generated_ok.append(text.startswith(rec["messages"][-1]["content"] + "<|im_end|>"))
    assert result.correct == generated_ok
    assert 0 < sum(generated_ok) < len(records)  # the oracle distinguishes both outcomes here
    assert result.exact_match == sum(generated_ok) / len(records)
