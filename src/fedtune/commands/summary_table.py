"""End-of-run tables (rich): one row per run, the figures a user compares."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def print_summary(console: Console, runs: dict[str, dict]) -> None:
    table = Table(title="fedtune summary")
    for col in ("run", "algorithm", "rounds", "exact match %", "test loss", "seconds", "MB sent"):
        table.add_column(col, justify="right" if col not in ("run", "algorithm") else "left")
    for label, s in runs.items():
        final = (s.get("final") or {}).get("global") or {}
        table.add_row(
            label, s.get("algorithm", ""), str(s.get("rounds", "")), _pct(final.get("exact_match")),
            f"{final['loss']:.3f}" if "loss" in final else "—", f"{s.get('seconds', 0):.0f}",
            f"{s.get('bytes_total', 0) / 1e6:.1f}",
        )
    console.print(table)


def print_eval(console: Console, result: dict) -> None:
    table = Table(title=f"evaluation: {result['label']}")
    for col in ("test set", "n", "exact match %", "loss"):
        table.add_column(col)
    for name, m in result["sets"].items():
        table.add_row(name, str(m["n"]), _pct(m["exact_match"]), f"{m['loss']:.3f}")
    console.print(table)
