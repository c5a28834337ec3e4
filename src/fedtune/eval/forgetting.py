"""Forgetting under a lifelong task stream (``data.schedule``): each client's exact match per task
over rounds, from the per-client evaluations in metrics.jsonl, and how much of each finished
task it lost by the end.

A task's score is the mean exact match over its categories (each category weighs the same).
Forgetting of a finished task is its best score from the round it was first trained on, minus
its final score (Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018: the
usual measure of continual learning); the current task has none.
"""

from __future__ import annotations

import fnmatch
import statistics


def task_scores(by_category: dict[str, float], names: list[str]) -> dict[str, float]:
    """Exact match per task name from per-category exact match (first matching pattern wins)."""
    groups: dict[str, list[float]] = {}
    for category, score in by_category.items():
        name = next((n for n in names if fnmatch.fnmatchcase(category, n)), None)
        if name is not None:
            groups.setdefault(name, []).append(score)
    return {name: statistics.fmean(v) for name, v in groups.items()}


def task_curves(rows: list[dict], client: str, names: list[str]) -> list[tuple[int, dict[str, float]]]:
    """(round, score per task) of every evaluated round that scored ``client`` on its own split."""
    out = []
    for row in rows:
        scores = ((row.get("eval") or {}).get("clients") or {}).get(client)
        if scores is not None:
            out.append((row["round"], task_scores(scores.get("by_category", {}), names)))
    return out


def stream_report(rows: list[dict], orders: dict[str, list[str]], rounds_per_task: int) -> dict:
    """Per client, each task it has met: the round it started, best and final exact match and
    (for a finished task) the forgetting; and the means over clients' finished tasks."""
    clients, forgetting, retained = {}, [], []
    for client, order in orders.items():
        curve = task_curves(rows, client, order)
        if not curve:
            continue
        last_round, final = curve[-1]
        now = min(last_round // rounds_per_task, len(order) - 1)  # its task at the end
        tasks = []
        for k, name in enumerate(order[:now + 1]):
            seen = [s[name] for r, s in curve if r >= k * rounds_per_task and name in s]
            if not seen or name not in final:
                continue
            entry = {"task": name, "from_round": k * rounds_per_task, "best": max(seen), "final": final[name]}
            if k < now:
                entry["forgetting"] = max(seen) - final[name]
                forgetting.append(entry["forgetting"])
                retained.append(final[name])
            tasks.append(entry)
        clients[client] = tasks
    return {"rounds_per_task": rounds_per_task, "clients": clients,
            "mean_forgetting": statistics.fmean(forgetting) if forgetting else None,
            "mean_final_on_past_tasks": statistics.fmean(retained) if retained else None}
