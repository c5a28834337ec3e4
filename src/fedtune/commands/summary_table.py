"""End-of-run tables (rich): one row per run, the figures a user compares."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fedtune.report.units import with_unit


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


EXTRA_EVAL_COLUMNS = {  # metric key -> column, shown when some test set has it
    "helpful_exact_match": "helpful EM %",
    "harmless_rate": "harmless %",
    "judge_safe_rate": "judge safe %",
    "llm_judge_safe_rate": "LLM judge safe %",
    "reward_accuracy": "reward acc %",
}


def print_eval(console: Console, result: dict) -> None:
    table = Table(title=f"evaluation: {result['label']}")
    extra = [k for k in EXTRA_EVAL_COLUMNS if any(k in m for m in result["sets"].values())]
    for col in ("test set", "n", "exact match %", "loss", *(EXTRA_EVAL_COLUMNS[k] for k in extra)):
        table.add_column(col)
    for name, m in result["sets"].items():
        table.add_row(name, str(m["n"]), _pct(m["exact_match"]), f"{m['loss']:.3f}",
                      *(_pct(m[k]) if m.get(k) is not None else "—" for k in extra))
    console.print(table)
    canaries = result["sets"].get("global", {})
    if "canaries" in canaries:
        console.print(f"canaries: {canaries['canaries']}, exposure {canaries['canary_exposure']:.2f} bits mean, "
                      f"{canaries['canary_exposure_max']:.2f} max; extracted by greedy decoding: "
                      f"{canaries['canary_extracted']}")
    if result.get("fairness", {}).get("exact_match"):
        f = result["fairness"]["exact_match"]
        console.print(f"across clients: exact match mean {_pct(f['mean'])}%, worst {_pct(f['worst'])}% "
                      f"(client {f['worst_client']}), spread {_pct(f['spread'])} points")
    if result.get("tasks"):
        print_tasks(console, result["tasks"])


def print_tasks(console: Console, tasks: dict[str, dict]) -> None:
    """One row per evaluation task: its figures with their units (as the report shows them)."""
    table = Table(title="evaluation tasks")
    for col in ("task", "n", "figures"):
        table.add_column(col)
    for label, figures in tasks.items():
        shown = ", ".join(f"{k} {with_unit(k, v)}" for k, v in figures.items() if k != "n" and v is not None)
        table.add_row(label, str(figures.get("n", "")), shown)
    console.print(table)
