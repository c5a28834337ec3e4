"""Exact and near-duplicate removal inside one client's data; the first occurrence is kept.

Exact: MD5 of the normalized text (Data-Juicer ``document_deduplicator``).
Near: MinHash over word n-gram shingles with datasketch's LSH index (Data-Juicer
``document_minhash_deduplicator``: window 5, 256 permutations, Jaccard 0.7).
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
from datasketch import MinHash, MinHashLSH
from pydantic import Field

from fedtune.data.ops.registry import OPS, DataOp
from fedtune.data.ops.text import record_text, words
from fedtune.schema import Section


def _normalized(text: str, lowercase: bool) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.lower() if lowercase else text


def exact_dedup(records: list[dict], lowercase: bool = True) -> list[bool]:
    seen: set[str] = set()
    keep = []
    for rec in records:
        digest = hashlib.md5(_normalized(record_text(rec), lowercase).encode()).hexdigest()
        keep.append(digest not in seen)
        seen.add(digest)
    return keep


def _shingles(text: str, window: int) -> list[bytes]:
    ws = words(text)
    if len(ws) <= window:
        return [" ".join(ws).encode()]
    return [" ".join(ws[i:i + window]).encode() for i in range(len(ws) - window + 1)]


def minhashes(records: list[dict], num_perm: int, window: int) -> list[MinHash]:
    """One MinHash per record (fixed seed, so signatures are comparable across clients and runs)."""
    return MinHash.bulk([_shingles(record_text(rec), window) for rec in records], num_perm=num_perm, seed=1)


@functools.cache
def _lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's optimal (bands, rows) for ``threshold``: a numerical integration that takes
    ~0.1 s, so it is done once, not once per client."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def near_dedup(records: list[dict], threshold: float = 0.7, num_perm: int = 256, window: int = 5) -> list[bool]:
    lsh = MinHashLSH(num_perm=num_perm, params=_lsh_bands(threshold, num_perm))
    keep = []
    for i, m in enumerate(minhashes(records, num_perm, window)):
        duplicate = bool(lsh.query(m))
        keep.append(not duplicate)
        if not duplicate:
            lsh.insert(str(i), m)
    return keep


def duplicate_count(records: list[dict]) -> int:
    """Exact duplicates (normalized text) in ``records`` — for ``fedtune data inspect``."""
    return int(np.sum(~np.array(exact_dedup(records), dtype=bool))) if records else 0


class ExactDedupParams(Section):
    """Drop records whose normalized text (lowercase, whitespace collapsed) was already seen."""

    lowercase: bool = True


@OPS.register("exact_dedup", ExactDedupParams)
class ExactDedup(DataOp):
    """Drop records whose normalized text (lowercase, whitespace collapsed) was already seen."""

    def keep(self, records, ctx):
        return exact_dedup(records, self.params.lowercase)


class NearDedupParams(Section):
    """MinHash-LSH near-duplicate removal (Data-Juicer document_minhash_deduplicator defaults)."""

    threshold: float = Field(0.7, gt=0, le=1)  # Jaccard similarity
    num_perm: int = Field(256, ge=16)
    window: int = Field(5, ge=1)  # word n-gram shingles


@OPS.register("near_dedup", NearDedupParams)
class NearDedup(DataOp):
    """MinHash-LSH near-duplicate removal (Data-Juicer document_minhash_deduplicator defaults)."""

    def keep(self, records, ctx):
        p = self.params
        return near_dedup(records, p.threshold, p.num_perm, p.window)
