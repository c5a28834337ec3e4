"""Write ``report.html``: a self-contained page (inline CSS, PNGs as data URIs) for one run —
every figure it recorded, per client, with units. Several runs: ``report/compare.py``."""

from __future__ import annotations

import html
import json
from pathlib import Path

from fedtune.client.state_store import ClientStateStore
from fedtune.data.federated import step_totals
from fedtune.quality.feddqc import SCORES
from fedtune.report import plots
from fedtune.report.collaboration import collaboration_section
from fedtune.report.task_stream import task_stream_section
from fedtune.report.units import CSS, img, read_rows, table, with_unit


def _quality_scores(run_dir: Path) -> dict[str, list[float]]:
    """Each client's latest quality scores (one per training example, IFD's -inf included) from its
    state store, where the run directory holds the stores (the embedded engine; Flower nodes keep
    theirs at the sites)."""
    root = run_dir / "clients"
    store = ClientStateStore(root)
    store.round = 1 << 30  # the latest version of each
    out = {}
    for d in sorted(root.glob("client_*")):
        saved = store.get(int(d.name.split("_")[1]), SCORES)
        if saved is not None:
            out[str(int(d.name.split("_")[1]))] = saved["scores"].tolist()
    return out


def _noisy_examples(summary: dict) -> dict[str, list[int]]:
    """Client id -> its corrupted training examples, where the data report knows them."""
    clients = (summary.get("data") or {}).get("clients", {})
    return {name.removeprefix("client_"): c["noisy"] for name, c in clients.items() if c.get("noisy")}


def _summary_rows(summary: dict) -> list[list]:
    rows = []
    for key, value in summary.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            rows.append([key, with_unit(key, value)])
    privacy = summary.get("privacy", {})
    if "client_level" in privacy:
        p = privacy["client_level"]
        rows.append(["ε (client level)", f"{with_unit('epsilon', p['epsilon'])} at δ = {p['delta']:g}, "
                                         f"z = {with_unit('z', p['noise_multiplier'])}"])
    if "sample_level" in privacy:
        p = privacy["sample_level"]
        rows.append(["ε (sample level, worst client)", f"{with_unit('epsilon', p['epsilon_max'])} at δ = {p['delta']:g}"])
    return rows


def _numbers(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _metrics_table(sets: list[tuple[str, dict]]) -> str:
    """One column per named set of figures, one row per numeric metric any of them has (with units)."""
    keys = dict.fromkeys(k for _, m in sets for k in _numbers(m))
    return table(["metric", *(name for name, _ in sets)], [[k, *(with_unit(k, m.get(k)) for _, m in sets)] for k in keys])


def _final_section(final: dict | None, names: dict[str, str]) -> str:
    """The last evaluation in full: every numeric metric on the global test set and on each
    client's own split, the spread across clients, and each task's figures (with units)."""
    if not final:
        return ""
    clients = final.get("clients") or {}
    out = "<h2>Final evaluation</h2>" + _metrics_table(
        [("global test", final.get("global") or {}), *((names.get(c, f"client {c}"), m) for c, m in clients.items())])
    if final.get("clients_on_global"):  # personal adapters: each client's own adapter on the global test too
        out += "<h3>Each client's own adapter on the global test set</h3>" + _metrics_table(
            [(names.get(c, f"client {c}"), m) for c, m in final["clients_on_global"].items()])
    if final.get("fairness"):
        out += "<h3>Across clients</h3>" + table(
            ["metric", "mean", "worst", "worst client", "best", "best client", "spread", "std"],
            [[k, with_unit(k, f["mean"]), with_unit(k, f["worst"]), names.get(f["worst_client"], f["worst_client"]),
              with_unit(k, f["best"]), names.get(f["best_client"], f["best_client"]), with_unit(k, f["spread"]),
              with_unit(k, f["std"])] for k, f in final["fairness"].items()])
    if final.get("tasks"):
        out += "<h3>Tasks</h3>" + table(["task", "figure", "value"], [
            [label, k, with_unit(k, v)] for label, figures in final["tasks"].items() for k, v in figures.items()])
    return out


def _data_section(data: dict) -> str:
    """What the data pipeline kept and dropped: totals per step, then records per client."""
    if not data:
        return ""
    steps = step_totals(data.get("steps", []))
    clients = data.get("clients", {})
    shown = list(clients.items())[:50]
    more = f"<p>… and {len(clients) - len(shown)} more clients.</p>" if len(clients) > len(shown) else ""
    return (f"<h2>Data</h2><p>source <b>{html.escape(str(data.get('source', 'built-in suite')))}</b>, partition "
            f"<b>{html.escape(str(data.get('partition', '')))}</b>, {len(clients)} clients.</p>"
            + table(["step", "kept", "dropped", "changed"], [[k, *t.values()] for k, t in steps.items()])
            + table(["client", "train", "test"], [[name, c.get("train"), c.get("test")] for name, c in shown]) + more)


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else ""
    title = summary.get("name") or run_dir.name
    status = "" if summary else "<p><b>Run in progress</b> (no summary.json yet).</p>"
    figures = [
        img(plots.train_loss(rows), "train loss"),
        img(plots.eval_metric(rows, "exact_match", "Exact match on test sets"), "exact match"),
        img(plots.eval_metric(rows, "loss", "Test loss"), "test loss"),
        img(plots.communication(rows), "communication"),
        img(plots.attack_harm(rows), "attack harm"),
        img(plots.safety(rows), "safety"),
        img(plots.privacy(rows), "privacy spent"),
        img(plots.quality_scores(_quality_scores(run_dir)), "quality scores"),
        img(plots.quality_noisy_vs_clean(_quality_scores(run_dir), _noisy_examples(summary)), "scores noisy vs clean"),
        img(plots.selected_layers(rows), "selected layers"),
        img(plots.eval_metric(rows, "canary_exposure", "Canary exposure (bits; higher = more memorized)"),
             "canary exposure"),
        *(img(png, name) for name, png in plots.extra_train_metrics(rows).items()),
    ]
    per_round = [[r["round"], len(r.get("clients", [])), with_unit("loss", r.get("train_loss")),
                  with_unit("exact_match", r.get("eval", {}).get("global", {}).get("exact_match")),
                  with_unit("loss", r.get("eval", {}).get("global", {}).get("loss")),
                  len(r.get("rejected", {})), with_unit("bytes", r.get("bytes_up", 0) + r.get("bytes_down", 0)),
                  with_unit("seconds", r.get("seconds", 0.0))] for r in rows]
    names = {str(int(k.split("_")[1])): k for k in ((summary.get("data") or {}).get("clients") or {})
             if k.startswith("client_") and k.split("_")[1].isdigit()}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(str(title))}</title>
<style>{CSS}</style></head><body>
<h1>fedtune run: {html.escape(str(title))}</h1>{status}
<p>algorithm <b>{html.escape(str(summary.get('algorithm', '')))}</b>, model <b>{html.escape(str(summary.get('model', '')))}</b>,
{len(rows)} round(s) recorded.</p>
<h2>Summary</h2>{table(["metric", "value"], _summary_rows(summary))}
<h2>Per round</h2><div class="grid">{''.join(f for f in figures if f)}</div>
{table(["round", "clients", "train loss", "exact match", "test loss", "rejected", "sent", "time"], per_round)}
{collaboration_section(rows)}
{task_stream_section(summary, rows)}
{_final_section(summary.get("final") or next((r["eval"] for r in reversed(rows) if "eval" in r), None), names)}
{_data_section(summary.get("data") or {})}
<h2>Configuration</h2><details><summary>config.yaml</summary><pre>{html.escape(config)}</pre></details>
</body></html>"""
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
