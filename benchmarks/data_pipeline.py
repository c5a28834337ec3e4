"""Data layer at FedLLM-Bench scale: a federated JSON file with 747 clients and 10,000 records is
read, partitioned (natural), processed (the Data-Juicer SFT recipe: exact + MinHash dedup, length,
alphanumeric, repetition, flagged words) and tokenized with the built-in model's chat template.

Targets (issue 4): cold < 30 s on 2 cores; a second run (cache) < 3 s.
Baseline measured in the same run: FedLLM-Bench's own loading (json.load, then
`datasets.Dataset.from_list` per client) — which neither processes nor tokenizes.

    python benchmarks/data_pipeline.py [--records 10000 --clients 747]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import tempfile
import time
from pathlib import Path

from common import machine

from fedtune.config import from_dict
from fedtune.data.build import build_federated_data
from fedtune.data.chat_templates import apply_template
from fedtune.data.tokenize import tokenize_sft_cached
from fedtune.models.loader import load_tokenizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPE = [{"op": "exact_dedup"}, {"op": "near_dedup"}, {"op": "length", "min": 30}, {"op": "alnum_ratio", "min": 0.1},
          {"op": "char_repetition", "rep_len": 10, "max": 0.6}, {"op": "flagged_words", "max_ratio": 0.017}]


def real_samples() -> list[dict]:
    """Instruction/response pairs from GSM8K and the first turn of HH-RLHF dialogues (real text)."""
    out = []
    for split in ("train", "test"):
        for line in (SHARED / "gsm8k" / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            out.append({"instruction": r["question"], "response": r["answer"]})
    with gzip.open(SHARED / "hh-rlhf-harmless" / "test.jsonl.gz", "rt") as f:
        for line in f:
            turns = json.loads(line)["chosen"].split("\n\nAssistant:")
            if len(turns) > 1 and turns[1].split("\n\nHuman:")[0].strip():
                out.append({"instruction": turns[0].replace("\n\nHuman:", "").strip(),
                            "response": turns[1].split("\n\nHuman:")[0].strip()})
    return out


def federated_file(path: Path, records: int, clients: int, seed: int = 0) -> None:
    """Skewed client sizes (a Zipf-like tail as in FedLLM-Bench), ~2% exact duplicates."""
    rng = random.Random(seed)
    pool = real_samples()
    rng.shuffle(pool)
    weights = [1 / (i + 1) ** 0.8 for i in range(clients)]
    owners = list(range(clients)) + rng.choices(range(clients), weights=weights, k=records - clients)
    data: dict[str, list] = {}
    for i, owner in enumerate(owners):
        sample = pool[i % len(pool)] if rng.random() > 0.02 else pool[rng.randrange(len(pool))]
        data.setdefault(f"user_{owner:04d}", []).append(sample)
    path.write_text(json.dumps(data))


def fedllm_bench_baseline(path: Path) -> float:
    import datasets

    t = time.perf_counter()
    data = json.loads(path.read_text())
    _ = [datasets.Dataset.from_list(v) for v in data.values()]
    return time.perf_counter() - t


def ours(path: Path, cache: Path, tokenizer) -> tuple[float, int]:
    cfg = from_dict({"data": {"source": str(path), "global_test": 0, "test_fraction": 0.0, "pipeline": RECIPE,
                              "max_length": 512, "system_prompt": None}})
    t = time.perf_counter()
    data = build_federated_data(cfg, "sft", cache_dir=cache / "data")
    tokens = sum(sum(tokenize_sft_cached(c.train, tokenizer, 512, None, cache / "tokens").lengths())
                 for c in data.clients)
    return time.perf_counter() - t, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=747)
    args = ap.parse_args()
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    apply_template(tokenizer, None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "fed_747c_10k.json"
        federated_file(path, args.records, args.clients)
        baseline = fedllm_bench_baseline(path)
        cold, tokens = ours(path, tmp / "cache", tokenizer)
        warm, tokens_again = ours(path, tmp / "cache", tokenizer)
    assert tokens == tokens_again
    print(f"machine: {machine()}")
    print(f"{args.records} records, {args.clients} clients, {tokens} tokens after processing")
    print(f"FedLLM-Bench loading (no processing, no tokenization): {baseline:6.2f} s")
    print(f"fedtune cold (read+partition+6 ops+tokenize):        {cold:6.2f} s   target < 30 s   "
          f"{cold / baseline:.1f}x the baseline")
    print(f"fedtune warm (cache):                                 {warm:6.2f} s   target < 3 s    "
          f"{warm / baseline:.2f}x the baseline, {cold / warm:.0f}x faster than cold")


if __name__ == "__main__":
    main()
