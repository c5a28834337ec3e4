"""`fedtune demo`: base model vs local-only vs federated on the built-in model and suite.

One base model is loaded once and shared by both training runs (only adapters differ). The
local-only baseline gets the same compute per client as federated training: the same rounds,
steps, batch and learning-rate schedule — it just never aggregates.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.eval.evaluator import Evaluator
from fedtune.eval.slices import slice_means
from fedtune.models.loader import load_base
from fedtune.report.compare import write_comparison

RECIPE = "demo.yaml"


def demo_config_path() -> Path:
    return Path(str(resources.files("fedtune.recipes").joinpath(RECIPE)))


def _row(label: str, ev: dict) -> list[str]:
    g = ev["global"]
    slices = slice_means(g.get("by_category", {}))
    cell = lambda x: "—" if x is None else f"{100 * x:.1f}"  # noqa: E731
    return [label, f"{100 * g['exact_match']:.1f}", cell(slices["facts"]), cell(slices["skills"]), f"{g['loss']:.3f}"]


def run_demo(output: Path, overrides: list[str], console: Console, err_console: Console) -> dict:
    started = time.perf_counter()
    base_cfg = load_config(demo_config_path(), overrides)
    console.print(f"[bold]fedtune demo[/]: {base_cfg.federation.num_clients} clients, "
                  f"{base_cfg.federation.rounds} rounds x {base_cfg.train.steps} steps, model {base_cfg.model.name}")
    loaded = load_base(base_cfg.model)
    console.print(f"model loaded in {time.perf_counter() - started:.0f}s")

    results, summaries = {}, {}
    for label, algo in (("local-only", "local"), ("federated (FedAvg)", "fedavg")):
        cfg = load_config(demo_config_path(), [*overrides, f"algorithm.name={algo}",
                                              f"output.dir={output / algo}", f"name=demo-{algo}"])
        ws = build_workspace(cfg, loaded)
        if "base model" not in results:  # LoRA starts with B = 0: the initial adapter *is* the base model
            results["base model"] = Evaluator(cfg, ws, ws.dpo_reference(cfg.train)).evaluate(ws.initial_adapter)
        summary = run_experiment(cfg, resume=False, workspace=ws, console=err_console)
        results[label] = summary["final"]
        summaries[label] = summary

    table = Table(title="fedtune demo — exact match on the global test set (%)")
    for col in ("model", "all", "facts", "skills", "test loss"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, ev in results.items():
        table.add_row(*_row(label, ev))
    console.print(table)
    base, local, fed = (results[k]["global"]["exact_match"] for k in results)
    console.print(f"federated vs base: {100 * (fed - base):+.1f} points; vs local-only mean: {100 * (fed - local):+.1f} points")
    report = write_comparison(output / "report.html", {k: Path(s["report"]).parent for k, s in summaries.items()},
                                     "fedtune demo: base vs local-only vs federated",
                                     extra={"base model": results["base model"]})
    seconds = time.perf_counter() - started
    console.print(f"total {seconds:.0f}s; report: {report}")
    return {"results": results, "seconds": seconds}
