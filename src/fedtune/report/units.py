"""The report's shared pieces: page style, an embedded PNG, an HTML table, a run's metrics rows,
and each figure shown with its unit (% for shares, MB for bytes, s for seconds)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}pre{background:#f6f6f6;padding:1em;overflow:auto}"""

# a figure whose key has one of these words is a share in [0, 1], shown as a percentage
SHARES = {"match", "accuracy", "acc", "rate", "rouge", "chance", "ece", "confidence", "share"}


def img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def with_unit(key: str, value) -> str:
    """``value`` of the figure ``key`` for the eye: shares as %, bytes as MB, seconds as s."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    k = key.lower()
    if "bytes" in k:
        return f"{value / 1e6:.2f} MB"
    if "seconds" in k:
        return f"{value:.1f} s"
    if SHARES & set(re.split(r"[_,\s/]+", k)) and 0 <= value <= 1:
        return f"{100 * value:.1f}%"
    return str(value) if isinstance(value, int) else f"{value:.4g}"
