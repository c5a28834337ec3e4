"""Per-layer coverage: which clients trained which adapter tensors (selective layers).

A key is reduced over the clients that trained it, never diluted by the zero deltas of those
that did not (Sun et al., ISIT 2025, ``server.py::aggregation``: θ_l ← θ_l + Σ_{i∈C_l} p_i Δ_i,l
with p_i normalized over C_l); a key nobody trained keeps its value (a zero delta). Keys with the
same set of trainers form one group, so a robust reducer runs once per distinct set.
"""

from __future__ import annotations

from fedtune.protocol import ClientUpdate


def coverage_groups(updates: list[ClientUpdate], keys: list[str]) -> list[tuple[list[int], list[str]]]:
    """(positions of the updates that trained them, keys) for every distinct set of trainers, in
    key order of first appearance; keys nobody trained are left out."""
    trained = [None if u.trained is None else set(u.trained) for u in updates]
    groups: dict[tuple[int, ...], list[str]] = {}
    for key in keys:
        members = tuple(i for i, t in enumerate(trained) if t is None or key in t)
        if members:
            groups.setdefault(members, []).append(key)
    return [(list(members), group) for members, group in groups.items()]
