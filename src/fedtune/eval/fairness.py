"""Fairness across clients, the federated view of a score: how the global model does on each
client's own test split — mean, worst client, best, spread (max − min) and standard deviation —
and, against a local-only run, each client's gain from federating.

A global mean can hide a client the federation serves badly (a minority skill, a small or skewed
split); the worst client and the spread show it (as in FedLLM-Bench's per-client figures).
"""

from __future__ import annotations

import statistics

LOWER_IS_BETTER = {"loss", "perplexity", "ece"}  # for these the worst client is the highest


def _scores(clients: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Metric -> {client: value} over the numeric metrics every client has."""
    common = set.intersection(*(set(m) for m in clients.values()))
    out = {}
    for key in sorted(common):
        values = {c: m[key] for c, m in clients.items()}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()) and key != "n":
            out[key] = values
    return out


def fairness(clients: dict[str, dict]) -> dict[str, dict]:
    """Per metric: mean, worst and best client (value and id), spread and standard deviation."""
    out = {}
    for key, values in _scores(clients).items():
        worst_of = max if key in LOWER_IS_BETTER else min
        best_of = min if key in LOWER_IS_BETTER else max
        worst, best = worst_of(values, key=values.get), best_of(values, key=values.get)
        v = list(values.values())
        out[key] = {"mean": statistics.fmean(v), "worst": values[worst], "worst_client": worst,
                    "best": values[best], "best_client": best, "spread": max(v) - min(v),
                    "std": statistics.pstdev(v)}
    return out


def gain_over_local(federated: dict[str, dict], local: dict[str, dict], metric: str = "exact_match") -> dict:
    """Each client's ``metric`` under the federated model minus under its own local-only adapter
    (both on the client's own test split), with the mean gain and how many clients lost."""
    gains = {c: federated[c][metric] - local[c][metric] for c in federated
             if c in local and metric in federated[c] and metric in local[c]}
    if not gains:
        return {}
    sign = -1 if metric in LOWER_IS_BETTER else 1  # a gain is always "better"
    gains = {c: sign * g for c, g in gains.items()}
    return {"per_client": gains, "mean": statistics.fmean(gains.values()),
            "clients_worse_off": sum(g < 0 for g in gains.values())}
