"""Distances between client deltas and weighted sums of them, computed tensor by tensor (no
flattened copy of all updates): what the distance-based reducers share (the coordinate-wise ones
use ``order_statistics``)."""

from __future__ import annotations

import torch

from fedtune.algorithms.aggregation.delta import Delta


def gram(deltas: list[Delta]) -> torch.Tensor:
    """[n, n] inner products <d_a, d_b> over all tensors, summed from per-tensor Gram matrices."""
    n = len(deltas)
    out = torch.zeros(n, n, dtype=torch.float64)
    for key in deltas[0]:
        flat = torch.stack([d[key].reshape(-1) for d in deltas])
        out += flat @ flat.T
    return out


def squared_distances(deltas: list[Delta]) -> torch.Tensor:
    """[n, n] squared global L2 distances ||d_a − d_b||² over all tensors (Blanchard et al.'s
    Krum, Flower's ``compute_distances``), from the Gram matrix."""
    gram_matrix = gram(deltas)
    norms = gram_matrix.diagonal()
    return (norms[:, None] + norms[None, :] - 2 * gram_matrix).clamp_min(0)


def per_tensor_distances(deltas: list[Delta]) -> torch.Tensor:
    """[n, n] sums over tensors of per-tensor L2 distances, Σ_k ||d_a[k] − d_b[k]|| (FederatedScope's
    Krum and Bulyan ``_calculate_distance``)."""
    n = len(deltas)
    out = torch.zeros(n, n, dtype=torch.float64)
    for key in deltas[0]:
        flat = torch.stack([d[key].reshape(-1) for d in deltas])
        out += torch.cdist(flat, flat)
    return out


def norms(deltas: list[Delta]) -> list[float]:
    """Global L2 norm of each delta over all its tensors."""
    return [float(sum(float((t * t).sum()) for t in d.values()) ** 0.5) for d in deltas]


def clip_to_norm(delta: Delta, norm: float, bound: float) -> Delta:
    """Δ · min(1, bound/‖Δ‖), given ‖Δ‖ = ``norm`` (norm bounding, DP-FedAvg's clipping)."""
    scale = min(1.0, bound / norm) if norm > 0 else 1.0
    return {k: t * scale for k, t in delta.items()} if scale < 1.0 else delta


def weighted_sum(deltas: list[Delta], weights: list[float]) -> Delta:
    """Σ_i w_i d_i (with weights that sum to one, the weighted mean)."""
    out = {}
    for key in deltas[0]:
        acc = weights[0] * deltas[0][key]
        for d, w in zip(deltas[1:], weights[1:]):
            acc = acc + w * d[key]
        out[key] = acc
    return out


def subset_mean(deltas: list[Delta], weights: list[float], kept: list[int]) -> Delta:
    """The weighted mean of the deltas at ``kept``, their weights renormalized to sum to one."""
    total = sum(weights[i] for i in kept)
    return weighted_sum([deltas[i] for i in kept], [weights[i] / total for i in kept])


def relative_drift(deltas: list[Delta], weights: list[float]) -> float:
    """Client drift: the mean distance of the clients' deltas from their weighted mean, relative
    to that mean's norm (0 = every client moved alike; the heterogeneity FedGC aims to reduce)."""
    mean = weighted_sum(deltas, weights)
    spread = norms([{k: d[k] - mean[k] for k in mean} for d in deltas])
    size = norms([mean])[0]
    return sum(spread) / len(spread) / size if size else 0.0
