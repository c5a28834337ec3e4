"""Tokenize records once per run: the chat template, completion-only labels, truncation counts.

Labels are found by *rendering*, not by searching for a marker's token ids (OpenFedLLM's
``encode(marker)[2:]`` only works for Llama-2): for assistant turn i we render the conversation
up to the generation prompt and up to the end of turn i; the characters in between are the
response, and every token whose character span falls inside a response is a label. This works
for any tokenizer with offsets and any template whose renderings are prefixes of each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fedtune.atomic_write import atomic_path
from fedtune.models.logprobs import IGNORE


@dataclass
class TokenizedSet:
    """Token ids and labels (-100 outside responses) per example, plus what truncation did."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int = 0
    dropped: list[int] = field(default_factory=list)  # indices whose responses were cut away entirely

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


def _with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt and messages[0]["role"] != "system":
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def render_chat(tokenizer, messages, add_generation_prompt: bool) -> str:
    """The conversation as the chat template writes it (ending in the assistant prompt if asked)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def response_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant responses."""
    text = render_chat(tokenizer, messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = render_chat(tokenizer, messages[:i], True)
        end_text = render_chat(tokenizer, messages[: i + 1], False).rstrip()
        if not text.startswith(start_text) or not text.startswith(end_text):
            raise ValueError("the chat template does not render conversations as prefixes of each other")
        spans.append((len(start_text), len(end_text)))
    return text, spans


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Token ids whose character span lies inside a response; IGNORE elsewhere."""
    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    a, b = bounds[:, 0], bounds[:, 1]
    inside = np.zeros(len(ids), dtype=bool)
    for s, e in spans:
        inside |= (s <= a) & (b <= e) & (b > a)
    return np.where(inside, np.asarray(ids, dtype=np.int64), IGNORE).tolist()


def tokenize_sft(records: list[dict], tokenizer, max_length: int, system_prompt: str | None = None) -> TokenizedSet:
    """Tokenize SFT records with labels on every assistant response (incl. its end-of-turn token).

    All texts go to the (Rust) tokenizer in one batch call."""
    out = TokenizedSet([], [])
    if not records:
        return out
    rendered = [response_spans(tokenizer, _with_system(rec["messages"], system_prompt)) for rec in records]
    enc = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    for idx, ((_, spans), ids, offsets) in enumerate(zip(rendered, enc["input_ids"], enc["offset_mapping"])):
        labels = _labels(ids, offsets, spans)
        if len(ids) > max_length:
            out.truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if all(l == IGNORE for l in labels):
            out.dropped.append(idx)
            continue
        out.input_ids.append(ids)
        out.labels.append(labels)
    return out


@dataclass
class PreferenceTokens:
    """Aligned chosen/rejected tokenizations (labels on the response) of preference pairs."""

    chosen: TokenizedSet
    rejected: TokenizedSet
    dropped: list[int] = field(default_factory=list)  # pairs whose either side lost its response

    def __len__(self) -> int:
        return len(self.chosen)

    def lengths(self) -> list[int]:
        return [max(a, b) for a, b in zip(self.chosen.lengths(), self.rejected.lengths())]


def as_sft(record: dict, side: str = "chosen") -> dict:
    """A preference record as an SFT record answering with ``side``."""
    return {"messages": [*record["prompt"], {"role": "assistant", "content": record[side]}],
            "category": record.get("category", "")}


def tokenize_preference(records: list[dict], tokenizer, max_length: int, system_prompt: str | None = None,
                        cache_dir: Path | None = None) -> PreferenceTokens:
    """Tokenize both sides of every pair; a pair is dropped (and counted) if either side is."""
    chosen = tokenize_sft_cached([as_sft(r, "chosen") for r in records], tokenizer, max_length, system_prompt, cache_dir)
    rejected = tokenize_sft_cached([as_sft(r, "rejected") for r in records], tokenizer, max_length, system_prompt,
                                   cache_dir)
    lost = set(chosen.dropped) | set(rejected.dropped)
    keep_c = [j for j, i in enumerate(i for i in range(len(records)) if i not in set(chosen.dropped)) if i not in lost]
    keep_r = [j for j, i in enumerate(i for i in range(len(records)) if i not in set(rejected.dropped)) if i not in lost]
    pick = lambda ts, idx: TokenizedSet([ts.input_ids[j] for j in idx], [ts.labels[j] for j in idx])  # noqa: E731
    out = PreferenceTokens(pick(chosen, keep_c), pick(rejected, keep_r), sorted(lost))
    out.chosen.truncated, out.rejected.truncated = chosen.truncated, rejected.truncated
    return out


def pool(sets: list[TokenizedSet] | list[PreferenceTokens]) -> TokenizedSet | PreferenceTokens:
    """Concatenate clients' tokenized data (the centralized baseline)."""
    if sets and isinstance(sets[0], PreferenceTokens):
        return PreferenceTokens(pool([s.chosen for s in sets]), pool([s.rejected for s in sets]))
    return TokenizedSet([x for s in sets for x in s.input_ids], [y for s in sets for y in s.labels])


def tokenize_prompts(records: list[dict], tokenizer, system_prompt: str | None = None) -> list[list[int]]:
    """Prompt ids up to the generation prompt (for generation and preference scoring)."""
    key = "messages" if "messages" in records[0] else "prompt"
    out = []
    for rec in records:
        msgs = rec[key]
        if key == "messages":
            msgs = msgs[: max(i for i, m in enumerate(msgs) if m["role"] == "assistant")]
        text = render_chat(tokenizer, _with_system(msgs, system_prompt), True)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


# ------------------------------------------------------------------------------ disk cache


def cache_key(records: list[dict], tokenizer, max_length: int, system_prompt: str | None) -> str:
    """Content hash of everything that determines the tokenization."""
    h = hashlib.sha256()
    h.update(json.dumps([getattr(tokenizer, "name_or_path", ""), len(tokenizer), tokenizer.chat_template,
                         max_length, system_prompt]).encode())
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True).encode())
    return h.hexdigest()[:32]


def save_tokenized(ts: TokenizedSet, path: Path) -> None:
    from safetensors.torch import save_file

    lengths = torch.tensor(ts.lengths(), dtype=torch.int64)
    flat_ids = torch.tensor([t for x in ts.input_ids for t in x], dtype=torch.int64)
    flat_labels = torch.tensor([t for x in ts.labels for t in x], dtype=torch.int64)
    with atomic_path(path) as tmp:
        save_file({"lengths": lengths, "ids": flat_ids, "labels": flat_labels,
                   "dropped": torch.tensor(ts.dropped, dtype=torch.int64),
                   "truncated": torch.tensor(ts.truncated)}, str(tmp))


def load_tokenized(path: Path) -> TokenizedSet:
    from safetensors.torch import load_file

    t = load_file(str(path))
    bounds = torch.cumsum(t["lengths"], 0).tolist()
    starts = [0, *bounds[:-1]]
    ids, labels = t["ids"].tolist(), t["labels"].tolist()
    return TokenizedSet([ids[a:b] for a, b in zip(starts, bounds)], [labels[a:b] for a, b in zip(starts, bounds)],
                        int(t["truncated"]), t["dropped"].tolist())


def tokenize_train(records: list[dict], kind: str, tokenizer, max_length: int, system_prompt: str | None,
                   cache_dir: Path | None) -> TokenizedSet | PreferenceTokens:
    """A client's training set: preference pairs, or SFT examples (cached on disk)."""
    if kind == "preference":
        return tokenize_preference(records, tokenizer, max_length, system_prompt, cache_dir)
    return tokenize_sft_cached(records, tokenizer, max_length, system_prompt, cache_dir) if records \
        else TokenizedSet([], [])


def tokenize_sft_cached(records, tokenizer, max_length, system_prompt, cache_dir: Path | None) -> TokenizedSet:
    """``tokenize_sft`` with a content-addressed safetensors cache (reused across runs)."""
    if cache_dir is None:
        return tokenize_sft(records, tokenizer, max_length, system_prompt)
    path = Path(cache_dir) / f"sft-{cache_key(records, tokenizer, max_length, system_prompt)}.safetensors"
    if path.exists():
        return load_tokenized(path)
    ts = tokenize_sft(records, tokenizer, max_length, system_prompt)
    save_tokenized(ts, path)
    return ts
