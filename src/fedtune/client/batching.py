"""Which examples a client trains on in a round, and how they are batched.

Stateless by design: the draw depends only on (seed, round, client), so a resumed run draws the
same batches as an uninterrupted one without saving any sampler state. Examples are drawn as
consecutive shuffled epochs (no repeats until every example was seen), then grouped by length
so padding wastes little compute, then the micro-batches are shuffled.
"""

from __future__ import annotations

import random

import torch

from fedtune.data.tokenize import IGNORE


def round_rng(seed: int, round: int, client_id: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}/{round}/{client_id}/{purpose}")


def draw_indices(n: int, count: int, rng: random.Random) -> list[int]:
    """``count`` indices from range(n), epoch by epoch without replacement."""
    out: list[int] = []
    while len(out) < count:
        perm = list(range(n))
        rng.shuffle(perm)
        out.extend(perm[: count - len(out)])
    return out


def length_grouped_batches(indices: list[int], lengths: list[int], batch_size: int, rng: random.Random,
                           group: int = 32) -> list[list[int]]:
    """Split into micro-batches of similar length: sort within windows of ``group`` batches."""
    window = batch_size * group
    batches = []
    for start in range(0, len(indices), window):
        chunk = sorted(indices[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(input_ids: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked in attention and ignored in the loss."""
    width = max(len(x) for x in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    lab = torch.full((len(input_ids), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, (x, y) in enumerate(zip(input_ids, labels)):
        ids[row, : len(x)] = torch.tensor(x)
        lab[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return {"input_ids": ids, "labels": lab, "attention_mask": mask}
