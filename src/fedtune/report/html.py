"""Write ``report.html``: a self-contained page (inline CSS, PNGs as data URIs) for a run,
and a comparison page for several runs (used by ``fedtune demo``)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from fedtune.client.state_store import ClientStateStore
from fedtune.data.federated import step_totals
from fedtune.quality.feddqc import SCORES
from fedtune.report import plots

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}pre{background:#f6f6f6;padding:1em;overflow:auto}"""


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
    final = (summary.get("final") or {}).get("global") or {}
    for key in ("exact_match", "loss", "n"):
        if key in final:
            rows.append([f"final {key.replace('_', ' ')}", _fmt(final[key])])
    for key, value in summary.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            rows.append([key, _fmt(value)])
    privacy = summary.get("privacy", {})
    if "client_level" in privacy:
        p = privacy["client_level"]
        rows.append(["ε (client level)", f"{_fmt(p['epsilon'])} at δ = {p['delta']:g}, z = {_fmt(p['noise_multiplier'])}"])
    if "sample_level" in privacy:
        p = privacy["sample_level"]
        rows.append(["ε (sample level, worst client)", f"{_fmt(p['epsilon_max'])} at δ = {p['delta']:g}"])
    return rows


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
            + _table(["step", "kept", "dropped", "changed"], [[k, *t.values()] for k, t in steps.items()])
            + _table(["client", "train", "test"], [[name, c.get("train"), c.get("test")] for name, c in shown]) + more)


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    rows = _read_rows(run_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else ""
    title = summary.get("name") or run_dir.name
    status = "" if summary else "<p><b>Run in progress</b> (no summary.json yet).</p>"
    figures = [
        _img(plots.train_loss(rows), "train loss"),
        _img(plots.eval_metric(rows, "exact_match", "Exact match on test sets"), "exact match"),
        _img(plots.eval_metric(rows, "loss", "Test loss"), "test loss"),
        _img(plots.communication(rows), "communication"),
        _img(plots.attack_harm(rows), "attack harm"),
        _img(plots.safety(rows), "safety"),
        _img(plots.privacy(rows), "privacy spent"),
        _img(plots.quality_scores(_quality_scores(run_dir)), "quality scores"),
        _img(plots.quality_noisy_vs_clean(_quality_scores(run_dir), _noisy_examples(summary)), "scores noisy vs clean"),
        _img(plots.selected_layers(rows), "selected layers"),
        _img(plots.eval_metric(rows, "canary_exposure", "Canary exposure (bits; higher = more memorized)"),
             "canary exposure"),
        *(_img(png, name) for name, png in plots.extra_train_metrics(rows).items()),
    ]
    per_round = [[r["round"], len(r.get("clients", [])), _fmt(r.get("train_loss")),
                  _fmt(r.get("eval", {}).get("global", {}).get("exact_match", "")),
                  _fmt(r.get("eval", {}).get("global", {}).get("loss", "")),
                  len(r.get("rejected", {})), _fmt((r.get("bytes_up", 0) + r.get("bytes_down", 0)) / 1e6),
                  _fmt(r.get("seconds", 0.0))] for r in rows]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(str(title))}</title>
<style>{CSS}</style></head><body>
<h1>fedtune run: {html.escape(str(title))}</h1>{status}
<p>algorithm <b>{html.escape(str(summary.get('algorithm', '')))}</b>, model <b>{html.escape(str(summary.get('model', '')))}</b>,
{len(rows)} round(s) recorded.</p>
<h2>Summary</h2>{_table(["metric", "value"], _summary_rows(summary))}
<h2>Per round</h2><div class="grid">{''.join(f for f in figures if f)}</div>
{_table(["round", "clients", "train loss", "exact match", "test loss", "rejected", "MB", "seconds"], per_round)}
{_data_section(summary.get("data") or {})}
<h2>Configuration</h2><details><summary>config.yaml</summary><pre>{html.escape(config)}</pre></details>
</body></html>"""
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def write_comparison_report(out_path: str | Path, runs: dict[str, Path], title: str,
                            extra: dict[str, dict] | None = None) -> Path:
    """One page comparing the final global exact match of several runs (plus ``extra`` entries
    that have an eval dict but no run directory, such as the base model)."""
    entries: dict[str, dict] = dict(extra or {})
    sent: dict[str, float] = {}  # label -> MB sent over the run
    for label, run_dir in runs.items():
        summary_path = Path(run_dir) / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            entries[label] = summary.get("final") or {}
            sent[label] = summary.get("bytes_total", 0) / 1e6
    labels = list(entries)
    values = [100 * (entries[k].get("global") or {}).get("exact_match", 0.0) for k in labels]
    rows = [[k, f"{v:.1f}", _fmt((entries[k].get("global") or {}).get("loss", ""))] for k, v in zip(labels, values)]
    links = "".join(f'<li><a href="{html.escape(str(Path(d).name))}/report.html">{html.escape(k)}</a></li>'
                    for k, d in runs.items())
    curves = {label: [(r["round"], 100 * r["eval"]["global"]["exact_match"]) for r in _read_rows(Path(d))
                      if "exact_match" in r.get("eval", {}).get("global", {})] for label, d in runs.items()}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>
{_img(plots.comparison_bar(labels, values, "Exact match on the global test set"), "comparison")}
{_img(plots.accuracy_curves(curves, "Exact match per round"), "accuracy per round")}
{_img(plots.bytes_tradeoff({k: (mb, values[labels.index(k)]) for k, mb in sent.items()},
                           "Exact match against bytes sent"), "exact match against bytes")}
{_table(["model", "exact match %", "test loss"], rows)}<h2>Runs</h2><ul>{links}</ul></body></html>"""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
