"""Run one experiment end to end: workspace -> engine -> run directory -> report.

The library entry point behind ``fedtune run`` (and reused by ``fedtune demo``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from rich.console import Console

from fedtune.adapter_state import AdapterState
from fedtune.cache import cache_root
from fedtune.config import ConfigError, RunConfig
from fedtune.engine.progress import Progress
from fedtune.engine.run_dir import RunDir
from fedtune.engine.simulation import Simulation
from fedtune.engine.workspace import Workspace, build_workspace, fit_federation
from fedtune.models.loader import LoadedModel, load_base
from fedtune.report.html import write_report


def run_experiment(cfg: RunConfig, resume: bool = False, loaded: LoadedModel | None = None,
                   progress: bool = True, console: Console | None = None,
                   workspace: Workspace | None = None, initial_adapter=None) -> dict:
    """Run ``cfg`` and return its summary (also written to ``summary.json``). A config with
    ``stages`` runs them in order, each starting from the previous stage's global adapter."""
    if cfg.stages:
        loaded = loaded or load_base(cfg.model)
        return run_stages(cfg, resume, lambda stage, adapter: run_experiment(
            stage, resume=resume, loaded=loaded, progress=progress, console=console, initial_adapter=adapter))
    if cfg.privacy.secure_aggregation is not None:
        raise ConfigError("privacy.secure_aggregation runs on the Flower deployment engine (fedtune flower run); "
                          "the embedded engine has no server that could be kept from single updates")
    run_dir = RunDir(cfg.run_dir())
    run_dir.start(cfg, resume)
    ws = workspace or build_workspace(cfg, loaded, cache_dir=cache_root(), initial_adapter=initial_adapter)
    cfg = fit_federation(cfg, ws.data)
    run_dir.write_json("data_report.json", ws.data_report)
    run_dir.write_synthesized(ws.data)
    sim = Simulation(cfg, ws, run_dir, Progress(progress, console, label=f"{cfg.name} rounds"))
    summary = sim.run(resume=resume)
    summary["report"] = str(write_report(run_dir.path))
    return summary


def run_stages(cfg: RunConfig, resume: bool, run_stage: Callable[[RunConfig, AdapterState | None], dict]) -> dict:
    """Multi-stage run (e.g. SFT then DPO): stage i writes <run dir>/stage_i and starts from stage
    i-1's final global adapter — which, with ``train.reference: start``, is also its DPO reference.
    ``run_stage(stage config, start adapter)`` runs one stage on an engine and returns its summary.
    On --resume, finished stages (those with a summary.json) are skipped."""
    root = RunDir(cfg.run_dir())
    root.start(cfg, resume)
    adapter, summaries = None, []
    for stage in cfg.stage_configs():
        done = stage.run_dir() / "summary.json"
        if resume and done.exists():
            summary = json.loads(done.read_text())
        else:
            summary = run_stage(stage, adapter)
        # the final global adapter in fedtune's own state (peft's saved form differs for soft
        # prompts, and with offsite the adapter that travels is the client model's)
        adapter = RunDir(stage.run_dir()).latest_adapter()
        summaries.append(summary)
    final = dict(summaries[-1])
    final.update({"name": cfg.name, "stages": [s["name"] for s in summaries],
                  "seconds": sum(s["seconds"] for s in summaries),
                  "bytes_total": sum(s["bytes_total"] for s in summaries),
                  "report": summaries[-1]["report"]})
    root.write_json("summary.json", final)
    return final
