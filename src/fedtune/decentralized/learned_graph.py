"""The learned collaboration graph: each client's row from update similarity (pFedGraph).

Source: Ye et al., "Personalized Federated Learning with Inferred Collaboration Graphs", ICML
2023; code MediaBrain-SJTU/pFedGraph@4f5f17c (pfedgraph_cosine/utils.py). With Δ_j the update
of client j since the common start, d_ij = −cos(Δ_i, Δ_j) (values below −0.9 set to −1), and p
the data-size weights, row i solves  min_x  Σ_j x_j·d_ij + α‖x − p‖²  over the simplex.
pFedGraph solves it with cvxpy; the objective is α‖x − (p − d_i/(2α))‖² + const, so the
solution is the Euclidean projection of p − d_i/(2α) onto the simplex, computed here in closed
form by sorting (Duchi et al., 2008): same optimum, no solver.
"""

from __future__ import annotations

import torch

from fedtune.adapter_state import AdapterState


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """The point of {x ≥ 0, Σx = 1} closest to ``v`` (Duchi et al., 2008, Fig. 1)."""
    u, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(u, 0) - 1
    index = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - cumulative / index > 0).max())
    theta = cumulative[rho] / (rho + 1)
    return torch.clamp(v - theta, min=0)


def flat_delta(adapter: AdapterState, start: AdapterState) -> torch.Tensor:
    """One vector of every adapter tensor's change since ``start`` (all parameters: pFedGraph's "all")."""
    return torch.cat([(adapter[k].double() - start[k].double()).flatten() for k in sorted(start)])


def dissimilarity(deltas: torch.Tensor, i: int | None = None) -> torch.Tensor:
    """d_ij = −cos(Δ_i, Δ_j), with d < −0.9 set to −1 (pFedGraph); a zero update is similar to
    nothing. The whole matrix, or only row ``i`` (what one node needs)."""
    norms = deltas.norm(dim=1, keepdim=True).clamp_min(1e-12)
    unit = deltas / norms
    d = -((unit if i is None else unit[i]) @ unit.T)
    return torch.where(d < -0.9, torch.full_like(d, -1.0), d)


def learned_row(i: int, deltas: torch.Tensor, sizes: list[int], alpha: float) -> torch.Tensor:
    """Client i's row: the simplex projection of p − d_i/(2α), p = data-size weights. What one
    node computes from its neighbours' updates (the rows need no coordinator)."""
    p = torch.tensor(sizes, dtype=torch.float64)
    p = p / p.sum()
    return project_to_simplex(p - dissimilarity(deltas, i) / (2 * alpha))


def learned_rows(deltas: torch.Tensor, sizes: list[int], alpha: float) -> torch.Tensor:
    """The whole graph: every client's ``learned_row``."""
    return torch.stack([learned_row(i, deltas, sizes, alpha) for i in range(len(sizes))])
