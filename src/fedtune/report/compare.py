"""A page comparing runs: ``fedtune report RUN [RUN …] -o compare.html`` (and the demo's page).

Every run's curves on the same axes — exact match, test and train loss, each task's figures,
ε, cumulative MB sent, the worst client and the spread across clients — a summary table of the
final figures, the tasks' final figures side by side, and, when one of the runs is local-only
(``algorithm: local`` with per-client evaluation), each client's gain from federating under
every other run. ``extra`` entries (e.g. the base model) have final figures but no run directory.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from fedtune.eval.fairness import gain_over_local
from fedtune.report import plots
from fedtune.report.units import CSS, img, read_rows, table, with_unit


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _series(rows: list[dict], pick) -> list[tuple[int, float]]:
    """(round, value) where ``pick(row)`` gives a number."""
    out = []
    for r in rows:
        try:
            v = pick(r)
        except (KeyError, TypeError):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((r["round"], float(v)))
    return out


def _cumulative_mb(rows: list[dict]) -> list[tuple[int, float]]:
    total, out = 0.0, []
    for r in rows:
        total += (r.get("bytes_up", 0) + r.get("bytes_down", 0)) / 1e6
        out.append((r["round"], total))
    return out


def _task_figures(evals) -> list[tuple[str, str]]:
    """(task label, figure) pairs with a number in some of ``evals`` (eval dicts), first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for ev in evals:
        for label, figures in (ev.get("tasks") or {}).items():
            for key, v in figures.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and key not in ("n", "seconds"):
                    seen[(label, key)] = None
    return list(seen)


def curves(rows_by_run: dict[str, list[dict]]) -> list[str]:
    """The comparison plots (as <img> tags), one per quantity some run recorded."""
    g = lambda key: lambda r: r["eval"]["global"][key]  # noqa: E731
    wanted = [
        ("exact match % (global test set)", "exact match per round", lambda r: 100 * g("exact_match")(r)),
        ("test loss", "test loss per round", g("loss")),
        ("train loss", "train loss per round", lambda r: r["train_loss"]),
        ("worst client exact match %", "worst client per round",
         lambda r: 100 * r["eval"]["fairness"]["exact_match"]["worst"]),
        ("client spread (points)", "spread across clients per round",
         lambda r: 100 * r["eval"]["fairness"]["exact_match"]["spread"]),
        ("ε (client level)", "privacy spent per round", lambda r: r["privacy"]["client_level"]["epsilon"]),
    ]
    out = []
    for ylabel, alt, pick in wanted:
        series = {label: _series(rows, pick) for label, rows in rows_by_run.items()}
        out.append(img(plots.run_curves(series, ylabel, ylabel[0].upper() + ylabel[1:]), alt))
    out.append(img(plots.run_curves({k: _cumulative_mb(v) for k, v in rows_by_run.items()}, "MB sent (cumulative)",
                                    "Communication"), "MB sent per round"))
    for label, key in _task_figures(r["eval"] for rows in rows_by_run.values() for r in rows if "eval" in r):
        pick = lambda r, label=label, key=key: r["eval"]["tasks"][label][key]  # noqa: E731
        series = {run: _series(rows, pick) for run, rows in rows_by_run.items()}
        out.append(img(plots.run_curves(series, f"{label} {key}", f"Task {label}: {key}"), f"{label} {key}"))
    return [f for f in out if f]


def _final_row(label: str, summary: dict, final: dict) -> list:
    glob, fair = final.get("global") or {}, (final.get("fairness") or {}).get("exact_match") or {}
    eps = ((summary.get("privacy") or {}).get("client_level") or {}).get("epsilon")
    return [label, summary.get("algorithm", ""), summary.get("rounds", ""), with_unit("exact_match", glob.get("exact_match")),
            with_unit("loss", glob.get("loss")), with_unit("exact_match", fair.get("worst")),
            with_unit("epsilon", eps), with_unit("bytes", summary.get("bytes_total")),
            with_unit("seconds", summary.get("seconds"))]


def _gains(finals: dict[str, dict], summaries: dict[str, dict]) -> str:
    """Per-client gain over the local-only run, for every other run with per-client figures."""
    local = next((k for k, s in summaries.items() if s.get("algorithm") == "local" and finals[k].get("clients")), None)
    if local is None:
        return ""
    gains = {label: gain_over_local(final["clients"], finals[local]["clients"]) for label, final in finals.items()
             if label != local and final.get("clients")}
    gains = {label: g for label, g in gains.items() if g}
    if not gains:
        return ""
    clients = list(next(iter(gains.values()))["per_client"])
    rows = [[label, *(f"{100 * v:+.1f}" for v in g["per_client"].values()), f"{100 * g['mean']:+.1f}",
             g["clients_worse_off"]] for label, g in gains.items()]
    return (f"<h2>Gain over local-only ({html.escape(local)})</h2><p>Exact match points on each client's own test "
            "split: the federated model minus the client's own local-only adapter.</p>"
            + table(["run", *(f"client {c}" for c in clients), "mean", "clients worse off"], rows))


def write_comparison(out_path: str | Path, runs: dict[str, Path], title: str,
                     extra: dict[str, dict] | None = None) -> Path:
    """The comparison page of ``runs`` (label -> run directory) plus ``extra`` (label -> final
    evaluation, no curves)."""
    summaries = {k: _summary(Path(d)) for k, d in runs.items()}
    rows_by_run = {k: read_rows(Path(d)) for k, d in runs.items()}
    finals = {**(extra or {}), **{k: s.get("final") or {} for k, s in summaries.items()}}
    labels = list(finals)
    em = [100 * ((finals[k].get("global") or {}).get("exact_match") or 0.0) for k in labels]
    summary_rows = [_final_row(k, summaries.get(k, {}), finals[k]) for k in labels]
    task_keys = _task_figures(finals.values())
    task_table = table(["task", "figure", *labels], [
        [t, f, *(with_unit(f, ((finals[k].get("tasks") or {}).get(t) or {}).get(f)) for k in labels)]
        for t, f in task_keys]) if task_keys else ""
    points = {k: (summaries[k].get("bytes_total", 0) / 1e6, em[labels.index(k)]) for k in runs if summaries[k]}
    here = Path(out_path).resolve().parent
    links = "".join(f'<li><a href="{html.escape(os.path.relpath(Path(d).resolve() / "report.html", here))}">'
                    f"{html.escape(k)}</a></li>" for k, d in runs.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>
<h2>Final figures</h2>{table(["run", "algorithm", "rounds", "exact match", "test loss", "worst client", "ε", "sent", "time"], summary_rows)}
{img(plots.comparison_bar(labels, em, "Exact match on the global test set"), "comparison")}
{f"<h2>Tasks (final evaluation)</h2>{task_table}" if task_table else ""}
<h2>Per round</h2><div class="grid">{''.join(curves(rows_by_run))}</div>
{img(plots.bytes_tradeoff(points, "Exact match against bytes sent"), "exact match against bytes")}
{_gains(finals, summaries)}
<h2>Runs</h2><ul>{links}</ul></body></html>"""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
