"""Run one experiment end to end: workspace -> engine -> run directory -> report.

The library entry point behind ``fedtune run`` (and reused by ``fedtune demo``).
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from fedtune.config import RunConfig
from fedtune.engine.progress import Progress
from fedtune.engine.run_dir import RunDir
from fedtune.engine.simulation import Simulation, Workspace
from fedtune.engine.workspace import build_workspace
from fedtune.models.loader import LoadedModel
from fedtune.report.html import write_report


def token_cache_dir() -> Path:
    """Where tokenized datasets are cached across runs: $FEDTUNE_CACHE or ~/.cache/fedtune."""
    root = os.environ.get("FEDTUNE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedtune"
    return Path(root) / "tokens"


def run_experiment(cfg: RunConfig, resume: bool = False, loaded: LoadedModel | None = None,
                   progress: bool = True, console: Console | None = None,
                   workspace: Workspace | None = None) -> dict:
    """Run ``cfg`` and return its summary (also written to ``summary.json``)."""
    run_dir = RunDir(cfg.run_dir())
    run_dir.start(cfg, resume)
    ws = workspace or build_workspace(cfg, loaded, cache_dir=token_cache_dir())
    sim = Simulation(cfg, ws, run_dir, Progress(progress, console, label=f"{cfg.name} rounds"))
    summary = sim.run(resume=resume)
    summary["report"] = str(write_report(run_dir.path))
    return summary
