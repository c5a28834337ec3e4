"""The report's task-stream section for lifelong runs (``data.schedule``): each client's exact
match per task over rounds, and per task the best and final score and the forgetting.

The figures are summary.json's ``task_stream`` (``fedtune.eval.forgetting``); the curves are
drawn from the per-client evaluations in metrics.jsonl."""

from __future__ import annotations

from fedtune.eval.forgetting import task_curves
from fedtune.report.plots import run_curves
from fedtune.report.units import img, table, with_unit


def curves(rows: list[dict], stream: dict) -> dict[str, list[tuple[int, float]]]:
    """One line per (client, task) from the round the client started that task."""
    out = {}
    for client, tasks in stream["clients"].items():
        names = [t["task"] for t in tasks]
        points = task_curves(rows, client, names)
        for t in tasks:
            out[f"client {client}: {t['task']}"] = [(r, s[t["task"]]) for r, s in points
                                                     if r >= t["from_round"] and t["task"] in s]
    return out


def _points(share: float) -> str:
    """A difference of exact-match shares in percentage points (negative: it got better)."""
    return f"{100 * share:+.1f} pts"


def task_stream_section(summary: dict, rows: list[dict]) -> str:
    """The section's HTML, empty for runs without a task stream."""
    stream = summary.get("task_stream")
    if not stream:
        return ""
    body = [[client, t["task"], t["from_round"], with_unit("exact_match", t["best"]),
             with_unit("exact_match", t["final"]),
             _points(t["forgetting"]) if "forgetting" in t else "(current task)"]
            for client, tasks in stream["clients"].items() for t in tasks]
    mean = stream.get("mean_forgetting")
    memory = f"a replay buffer of {stream['replay']} records" if stream.get("replay") else "no memory"
    return ("<h2>Task stream</h2>"
            f"<p>Each client meets its tasks in order, {stream['rounds_per_task']} round(s) each, with {memory}. "
            "Forgetting = a finished task's best exact match minus its final one"
            + (f"; mean over clients' finished tasks: <b>{_points(mean)}</b>." if mean is not None
               else ".") + "</p>"
            + img(run_curves(curves(rows, stream), "exact match", "Each client's own split, per task"),
                  "exact match per task")
            + table(["client", "task", "from round", "best exact match", "final", "forgetting"], body))
