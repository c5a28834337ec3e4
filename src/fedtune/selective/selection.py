"""Which layers each client trains: the static baselines, per-client top-b, and the paper's
strategic selection (Sun et al., "Exploring Selective Layer Fine-Tuning in Federated Learning",
ISIT 2025, arXiv 2408.15600; authors' code ``hiyuchang/fed_sel_tune``, ``find_selection_set``).

The strategic selection over N clients and K candidate layers, with importance s_il and budget b_i:

    maximize  Σ_i Σ_l m_il s_il − λ Σ_l Σ_{i<i'} (m_il − m_i'l)²   s.t.  Σ_l m_il ≤ b_i,  m ∈ {0,1}

For binary m the penalty of layer l is k_l (N − k_l), k_l = Σ_i m_il the clients selecting it, so
the problem is an exact MILP: one-hot z_lk (k = 0..N) with Σ_k z_lk = 1 and Σ_k k z_lk = k_l
makes the penalty linear, Σ_k λ k (N − k) z_lk. We solve that with HiGHS (``scipy.optimize.milp``,
relative gap 0: proven optimal), where the authors call cvxpy's ECOS_BB on the quadratic form and
fall back to top-b after 50 failures. As in their code, a client left under budget is padded with
its top-importance layers — up to b_i (their loop adds one layer past the budget; we do not).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp


def static_order(strategy: str, layers: list[int]) -> list[int]:
    """The baselines' preference order: top = output side first, bottom = input side first,
    both = alternating ends (bottom, top, bottom+1, top−1, ...); all = every layer."""
    if strategy in ("all", "bottom"):
        return list(layers)
    if strategy == "top":
        return list(reversed(layers))
    if strategy == "both":
        ends = [None] * (2 * len(layers))
        ends[::2], ends[1::2] = layers, list(reversed(layers))
        return list(dict.fromkeys(ends))
    raise ValueError(f"{strategy} is not a static strategy")


def top_b(scores: np.ndarray, b: int) -> list[int]:
    """Positions of the b highest scores (ties by position), ascending."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return sorted(order[:b])


def objective(scores: np.ndarray, chosen: list[list[int]], balance: float) -> float:
    """The strategic objective of a selection (positions into the score matrix's columns)."""
    n, k = scores.shape
    counts = np.zeros(k)
    gain = 0.0
    for i, cols in enumerate(chosen):
        counts[cols] += 1
        gain += float(scores[i, cols].sum())
    return gain - balance * float((counts * (n - counts)).sum())


def strategic(scores: np.ndarray, budgets: list[int], balance: float, pad: bool = True) -> list[list[int]]:
    """The strategic selection: the exact optimum, padded to budget with each client's top
    layers when ``pad`` (the authors' behaviour). ``scores`` is N x K; column positions per client."""
    chosen = optimum(scores, budgets, balance)
    return [pad_to_budget(cols, scores[i], budgets[i]) for i, cols in enumerate(chosen)] if pad else chosen


def pad_to_budget(cols: list[int], scores: np.ndarray, b: int) -> list[int]:
    """``cols`` plus the client's best other layers until it holds b, ascending."""
    cols = list(cols)
    for j in sorted(range(len(scores)), key=lambda j: (-scores[j], j)):
        if len(cols) >= b:
            break
        if j not in cols:
            cols.append(j)
    return sorted(cols)


def optimum(scores: np.ndarray, budgets: list[int], balance: float) -> list[list[int]]:
    """The proven optimum of the strategic objective (column positions per client, ascending)."""
    n, k = scores.shape
    if balance == 0:  # the problem separates: each client's top-b (exactly what the MILP returns)
        return [top_b(scores[i], budgets[i]) for i in range(n)]
    m_vars, z_vars = n * k, k * (n + 1)
    counts = np.arange(n + 1)
    cost = np.concatenate([-scores.reshape(-1), np.tile(balance * counts * (n - counts), k)])
    budget_rows = np.zeros((n, m_vars + z_vars))  # Σ_l m_il ≤ b_i
    for i in range(n):
        budget_rows[i, i * k:(i + 1) * k] = 1
    one_hot = np.zeros((k, m_vars + z_vars))  # Σ_k z_lk = 1
    counting = np.zeros((k, m_vars + z_vars))  # Σ_i m_il − Σ_k k z_lk = 0
    for layer in range(k):
        z = slice(m_vars + layer * (n + 1), m_vars + (layer + 1) * (n + 1))
        one_hot[layer, z] = 1
        counting[layer, [i * k + layer for i in range(n)]] = 1
        counting[layer, z] = -counts
    constraints = [LinearConstraint(budget_rows, -np.inf, np.array(budgets, dtype=float)),
                   LinearConstraint(one_hot, 1, 1), LinearConstraint(counting, 0, 0)]
    result = milp(cost, constraints=constraints, integrality=np.ones(m_vars + z_vars), bounds=Bounds(0, 1),
                  options={"mip_rel_gap": 0.0, "disp": False})
    if result.x is None:
        raise RuntimeError(f"the strategic layer selection found no solution: {result.message}")
    m = np.round(result.x[:m_vars]).reshape(n, k).astype(bool)
    return [[int(j) for j in np.flatnonzero(m[i])] for i in range(n)]
