"""Coordinate-wise order statistics over the clients, fast: what median, trimmed mean and Bulyan share.

A robust coordinate-wise rule sorts, for every coordinate, the n client values (n ≈ 10). ``torch.sort``
along a short dim 0 is slow (0.8–0.9 s for 10 × 4.9 M float64 on 2 cores, the size of SmolLM2's LoRA
adapter). Here the n rows are sorted by a fixed comparator network (Batcher's odd–even merge sort,
32 compare–exchanges for n = 10), each comparator an elementwise min/max over a block of columns that
stays in cache: the same sorted values, exactly, in about half the time. Columns of all the adapter's
tensors are packed into blocks of ``BLOCK`` so that a few hundred small LoRA tensors do not each pay
the Python cost of the network; only one block is stacked at a time, so memory holds the round's
updates plus one block.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch

from fedtune.algorithms.aggregation.delta import Delta

BLOCK = 1 << 18  # columns per block: 10 rows × 2^18 float64 = 20 MB, which keeps min/max in cache


@cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd–even merge sort for n inputs: compare–exchange pairs (a, b), a < b, in order.

    Built for the next power of two; comparators that touch a missing input are dropped (a missing
    input acts as +∞, which never moves, so the rest still sorts)."""
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


def sort_rows(x: torch.Tensor) -> list[torch.Tensor]:
    """The rows of x [n, m] sorted per column (row 0 the smallest), as n tensors of [m]."""
    rows = [r.clone() for r in x]
    for a, b in sorting_network(len(rows)):
        low = torch.minimum(rows[a], rows[b])
        torch.maximum(rows[a], rows[b], out=rows[b])
        rows[a] = low
    return rows


def coordinatewise(deltas: list[Delta], rule: Callable[[list[torch.Tensor]], torch.Tensor]) -> Delta:
    """Apply ``rule`` (sorted rows [m] each → aggregate [m]) to every coordinate of the deltas.

    Tensors are flattened and packed, in key order, into blocks of about ``BLOCK`` columns; each
    block is stacked across clients, sorted and reduced, and the result split back per tensor."""
    keys = list(deltas[0])
    out: Delta = {}
    start = 0
    while start < len(keys):
        # gather whole tensors until the block is full (a tensor larger than BLOCK is a block alone)
        end, width = start, 0
        while end < len(keys) and (width == 0 or width + deltas[0][keys[end]].numel() <= BLOCK):
            width += deltas[0][keys[end]].numel()
            end += 1
        block = torch.stack([torch.cat([d[k].reshape(-1) for k in keys[start:end]]) for d in deltas])
        reduced = rule(sort_rows(block))
        # split the block's aggregate back into its tensors
        offset = 0
        for k in keys[start:end]:
            size = deltas[0][k].numel()
            out[k] = reduced[offset : offset + size].reshape(deltas[0][k].shape)
            offset += size
        start = end
    return out


def middle(rows: list[torch.Tensor]) -> torch.Tensor:
    """The median of sorted rows: the middle one, or the mean of the two middle ones."""
    n = len(rows)
    return rows[n // 2] if n % 2 else 0.5 * (rows[n // 2 - 1] + rows[n // 2])


def mean_of(rows: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise mean of a list of [m] tensors, summed in order."""
    total = rows[0].clone()
    for r in rows[1:]:
        total += r
    return total / len(rows)
