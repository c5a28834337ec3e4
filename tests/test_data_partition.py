"""Partitions via flwr-datasets: every record lands in at most one client, in the way the method says."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fedtune.data.config import PartitionConfig
from fedtune.data.partition import partition_indices
from fedtune.data.sources import DataError

_RNG = random.Random(0)
LABELS = [_RNG.choice("abcde") for _ in range(400)]


def _check_disjoint(indices, n):
    flat = [i for part in indices for i in part]
    assert len(flat) == len(set(flat)) and all(0 <= i < n for i in flat)


@pytest.mark.parametrize("method", ["iid", "dirichlet", "pathological", "shard", "size"])
def test_methods_are_disjoint_and_seeded(method):
    cfg = PartitionConfig(method=method, alpha=0.3, classes_per_client=2)
    a, names = partition_indices(LABELS, method, cfg, 5, seed=1)
    b, _ = partition_indices(LABELS, method, cfg, 5, seed=1)
    assert a == b and len(a) == 5 and names == [f"client_{i}" for i in range(5)]
    _check_disjoint(a, len(LABELS))


def test_pathological_gives_each_client_at_most_k_classes():
    idx, _ = partition_indices(LABELS, "pathological", PartitionConfig(classes_per_client=2), 5, seed=0)
    assert all(len({LABELS[i] for i in part}) <= 2 for part in idx)


def test_dirichlet_small_alpha_is_more_skewed_than_large():
    def skew(alpha):
        idx, _ = partition_indices(LABELS, "dirichlet", PartitionConfig(alpha=alpha), 5, seed=0)
        return sum(max(Counter(LABELS[i] for i in part).values()) / len(part) for part in idx) / 5
    assert skew(0.05) > skew(100.0) + 0.2


def test_size_partition_explicit_sizes_and_linear_skew():
    idx, _ = partition_indices(LABELS, "size", PartitionConfig(sizes=[10, 20, 30]), 3, seed=0)
    assert [len(p) for p in idx] == [10, 20, 30]
    lin, _ = partition_indices(LABELS, "size", PartitionConfig(), 4, seed=0)
    assert [len(p) for p in lin] == sorted(len(p) for p in lin) and len(lin[3]) > 3 * len(lin[0])
    with pytest.raises(DataError, match="data.partition.sizes: need 3 sizes"):
        partition_indices(LABELS, "size", PartitionConfig(sizes=[1, 2]), 3, seed=0)


def test_natural_partition_follows_first_appearance_order():
    ids = ["u9", "u1", "u9", "u5", "u1"]
    idx, names = partition_indices(ids, "natural", PartitionConfig(), 99, seed=0)
    assert names == ["u9", "u1", "u5"] and idx == [[0, 2], [1, 4], [3]]


def test_impossible_partitions_are_clear_errors():
    with pytest.raises(DataError, match="3 records cannot be split into 5 clients"):
        partition_indices(["a", "b", "c"], "iid", PartitionConfig(), 5, seed=0)
    with pytest.raises(DataError, match=r"data.partition \(dirichlet\)"):
        partition_indices(LABELS[:20], "dirichlet", PartitionConfig(min_partition_size=10), 5, seed=0)
