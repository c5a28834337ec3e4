"""Generation throughput of the local backend: batched, left-padded ``generate`` with a KV cache
(``synth/local.py``) against plain one-prompt-at-a-time ``model.generate``, on the same prompts
in one run. Target: >= 4x tokens/s at batch 16 (issue 17).

Usage: python benchmarks/generation.py [--model smollm2-135m-instruct] [--prompts 32]
           [--batch-size 16] [--max-new-tokens 48]

Tokens counted are the generated ones (up to the end-of-turn token or ``max_new_tokens``);
greedy decoding, the output cache off, one warm-up prompt first; the built-in suite's questions
as prompts.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine


def suite_prompts(n: int) -> list[list[dict]]:
    from fedtune.data.config import SuiteConfig
    from fedtune.data.suite import build_suite

    data = build_suite(SuiteConfig(), 4, seed=0)
    records = [r for c in data.clients for r in c.train][:n]
    return [[m for m in r["messages"] if m["role"] != "assistant"] for r in records]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    args = p.parse_args()

    from fedtune.data.tokenize import tokenize_prompts
    from fedtune.models.loader import load_model
    from fedtune.synth.generation import GENERATORS, build_generator

    loaded = load_model(args.model)
    model, tok = loaded.model, loaded.tokenizer
    convs = suite_prompts(args.prompts)
    ids = tokenize_prompts([{"prompt": c} for c in convs], tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def count(texts):
        return sum(len(tok(t, add_special_tokens=False).input_ids) + 1 for t in texts)  # +1: the stop token

    # baseline: one prompt at a time, plain model.generate
    with torch.no_grad():
        model.generate(input_ids=torch.tensor([ids[0]]), max_new_tokens=4, do_sample=False, pad_token_id=pad)
        started = time.perf_counter()
        plain = []
        for x in ids:
            out = model.generate(input_ids=torch.tensor([x]), max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=pad)
            plain.append(tok.decode(out[0, len(x):], skip_special_tokens=True).strip())
        plain_s = time.perf_counter() - started

    gen = build_generator(GENERATORS.config("local", max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                            cache=False), model, tok)
    started = time.perf_counter()
    batched = gen.generate(convs)
    batched_s = time.perf_counter() - started

    plain_tps, batched_tps = count(plain) / plain_s, count(batched) / batched_s
    same = sum(a == b for a, b in zip(plain, batched))
    print(f"machine: {machine()}")
    print(f"{len(convs)} prompts, max_new_tokens {args.max_new_tokens}, greedy")
    print(f"one at a time : {plain_s:7.1f} s  {plain_tps:7.1f} tokens/s")
    print(f"batch {args.batch_size:<7d} : {batched_s:7.1f} s  {batched_tps:7.1f} tokens/s  "
          f"ratio {batched_tps / plain_tps:.2f}x (target >= 4x)")
    note = "" if same == len(convs) else " (left padding can change floating-point sums, and so a greedy choice)"
    print(f"identical greedy answers: {same}/{len(convs)}{note}")


if __name__ == "__main__":
    main()
