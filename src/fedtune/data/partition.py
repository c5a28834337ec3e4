"""Split one pool of records into clients the way FL research does, with flwr-datasets' partitioners.

We hand the partitioner a two-column ``datasets.Dataset`` (row index, label) and read back each
partition's row indices, so records never go through Arrow and the partitioners stay the
well-tested Flower ones (IID, Dirichlet, pathological, shard, size, natural id).
"""

from __future__ import annotations

import datasets
from flwr_datasets import partitioner as fp

from fedtune.data.config import PartitionConfig
from fedtune.data.sources import DataError


def _partitioner(cfg: PartitionConfig, method: str, num_clients: int, num_rows: int, seed: int):
    if method == "iid":
        return fp.IidPartitioner(num_clients)
    if method == "dirichlet":
        return fp.DirichletPartitioner(num_clients, "label", cfg.alpha, min_partition_size=cfg.min_partition_size,
                                       self_balancing=False, shuffle=True, seed=seed)
    if method == "pathological":
        return fp.PathologicalPartitioner(num_clients, "label", cfg.classes_per_client, shuffle=True, seed=seed)
    if method == "shard":
        return fp.ShardPartitioner(num_clients, "label", num_shards_per_partition=cfg.shards_per_client,
                                   shuffle=True, seed=seed)
    if method == "size":
        if cfg.sizes is not None:
            if len(cfg.sizes) != num_clients or sum(cfg.sizes) > num_rows:
                raise DataError(f"data.partition.sizes: need {num_clients} sizes summing to at most {num_rows} "
                                f"records, got {len(cfg.sizes)} summing to {sum(cfg.sizes)}")
            return fp.SizePartitioner(cfg.sizes)
        return (fp.LinearPartitioner if cfg.size_skew == "linear" else fp.ExponentialPartitioner)(num_clients)
    return fp.NaturalIdPartitioner("label")


def partition_indices(labels: list[str], method: str, cfg: PartitionConfig, num_clients: int, seed: int
                      ) -> tuple[list[list[int]], list[str]]:
    """Row indices per client and the clients' names.

    ``labels`` are the class labels (or, for ``natural``, the client ids: each distinct value is
    a client, in order of first appearance)."""
    if method == "natural":
        order = list(dict.fromkeys(labels))  # first-appearance order (FedLLM-Bench: the file's key order)
        rank = {v: f"{i:07d}" for i, v in enumerate(order)}
        labels, names = [rank[v] for v in labels], order
    else:
        names = [f"client_{i}" for i in range(num_clients)]
    if method == "iid" and num_clients > len(labels):
        raise DataError(f"data.partition: {len(labels)} records cannot be split into {num_clients} clients")
    table = datasets.Dataset.from_dict({"row": list(range(len(labels))), "label": labels})
    part = _partitioner(cfg, method, num_clients, len(labels), seed)
    part.dataset = table
    try:
        indices = [part.load_partition(i)["row"] for i in range(part.num_partitions)]
    except ValueError as e:  # e.g. Dirichlet cannot meet min_partition_size, too few classes
        raise DataError(f"data.partition ({method}): {e}") from None
    return indices, names
