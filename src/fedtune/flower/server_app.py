"""The fedtune ServerApp: resolve the run config, build the server's workspace (for evaluation),
and run the shared round loop with Flower SuperNodes as the clients.

Everything FL happens in the objects the embedded engine uses too: client sampling
(``engine.schedule``), the Strategy (``server.registry``), update checks, evaluation, the run
directory (metrics.jsonl, checkpoints, summary.json, --resume). The run directory is written
where the ServerApp runs (the SuperLink's machine), at the config's ``output.dir``. Under a
decentralized topology the same loop makes this ServerApp a relay: it forwards neighbours'
adapters and the nodes mix (docs/decentralized.md).
"""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedtune.algorithms import ALGORITHMS
from fedtune.cache import cache_root
from fedtune.config import ConfigError, RunConfig
from fedtune.engine.progress import Progress
from fedtune.engine.rounds import RoundLoop
from fedtune.engine.run_dir import RunDir
from fedtune.engine.workspace import build_workspace, fit_federation
from fedtune.flower.app_config import AppSettings
from fedtune.flower.grid_clients import FlowerClients
from fedtune.flower.secure_clients import SecureAggregatedClients
from fedtune.offsite import for_clients

log = logging.getLogger("fedtune")
app = ServerApp()


class LogProgress(Progress):
    """Progress as one log line per round (the ServerApp's output is Flower's run log)."""

    def __init__(self):
        super().__init__(enabled=False)

    def round_done(self, row: dict) -> None:
        ev = row.get("eval", {}).get("global", {})
        parts = [f"round {row['round']}: clients {row['clients']}"]
        if row.get("train_loss") is not None:
            parts.append(f"train loss {row['train_loss']:.4f}")
        if ev:
            parts.append(f"eval EM {ev['exact_match']:.3f} loss {ev['loss']:.4f}")
        parts.append(f"bytes up {row['bytes_up']} down {row['bytes_down']}")
        for kind in ("rejected", "failed"):
            if row.get(kind):
                parts.append(f"{kind} {row[kind]}")
        log.info("; ".join(parts))


def check_supported(cfg: RunConfig) -> None:
    """Refuse what the Flower engine cannot run, with the reason: a strategy that declares it
    needs every client in one process (pooled data or personal adapters: the baselines)."""
    strategy = ALGORITHMS[cfg.algorithm.name].target
    if strategy.pools_data or strategy.personal_adapters:
        raise ConfigError(f"algorithm.name={cfg.algorithm.name}: this baseline needs all data or per-client adapters "
                          "in one process; run it with `fedtune run`")


def run_on_grid(grid: Grid, settings: AppSettings) -> dict:
    """One fedtune run over ``grid`` (each stage in turn for a multi-stage config); returns the
    summary (also written to summary.json)."""
    cfg = settings.run_config()
    check_supported(cfg)
    if not cfg.stages:
        return run_single(grid, settings, cfg)
    from fedtune.engine.runner import run_stages
    from fedtune.models.loader import load_base

    loaded = load_base(cfg.model)  # shared by the stages
    return run_stages(cfg, settings.resume, lambda stage, adapter: run_single(grid, settings, stage, loaded, adapter))


def run_single(grid: Grid, settings: AppSettings, cfg: RunConfig, loaded=None, initial_adapter=None) -> dict:
    """One single-stage run of ``cfg`` over ``grid``, starting from ``initial_adapter`` if given."""
    from fedtune.report.html import write_report

    run_dir = RunDir(cfg.run_dir())
    run_dir.start(cfg, settings.resume)
    log.info("fedtune run %r: %d clients, %d rounds, run directory %s", cfg.name, cfg.federation.num_clients,
             cfg.federation.rounds, run_dir.path.resolve())
    # SecAgg+: the server sees only the weighted mean (what it cannot run with was refused at load time)
    executor = SecureAggregatedClients if cfg.privacy.secure_aggregation is not None else FlowerClients
    clients = executor(grid, cfg, settings.round_timeout, settings.node_wait)
    clients.announce()  # nodes start their ClientApps to answer while the workspace is built
    ws = build_workspace(cfg, loaded, cache_dir=cache_root(), initial_adapter=initial_adapter)
    cfg = fit_federation(cfg, ws.data)
    clients.use_config(for_clients(cfg, ws.client))  # offsite: the nodes load the saved client model
    clients.reference = ws.dpo_reference(cfg.train)
    run_dir.write_json("data_report.json", ws.data_report)
    run_dir.write_synthesized(ws.data)
    loop = RoundLoop(cfg, ws, run_dir, clients, progress=LogProgress(), min_replies=settings.min_replies,
                     engine="flower")
    summary = loop.run(resume=settings.resume)
    summary["report"] = str(write_report(run_dir.path))
    log.info("run finished: %s", run_dir.path.resolve())
    return summary


@app.main()
def main(grid: Grid, context: Context) -> None:
    _log_to_stderr()
    run_on_grid(grid, AppSettings.from_run_config(dict(context.run_config)))


def _log_to_stderr() -> None:
    logger = logging.getLogger("fedtune")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s fedtune: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
