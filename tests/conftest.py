"""Shared fixtures: the tiny random model (loaded once per session) and small configs."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# `make test` runs two pytest-xdist workers on the 2-core CI machine: one torch thread each, so
# they do not fight over the cores. Flower tests (real SuperLink/SuperNode processes on free
# ports, each with its own FLWR_HOME) run on either worker, beside any other test.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from fedtune.models.loader import load_smollm2_tokenizer

    return load_smollm2_tokenizer()


@pytest.fixture()
def tiny(smollm2_tokenizer):
    """A fresh tiny random Llama sharing the real SmolLM2 tokenizer (no LoRA attached)."""
    from fedtune.models.loader import tiny_random

    return tiny_random(smollm2_tokenizer)


def tiny_overrides(tmp_path, **extra) -> list[str]:
    """--set style overrides for a fast tiny-random run writing into tmp_path."""
    base = {
        "model.name": "tiny-random",
        "federation.num_clients": 3,
        "federation.rounds": 2,
        "train.steps": 2,
        "train.batch_size": 4,
        "train.lr": 1e-2,
        "data.suite.entities_per_client": 2,
        "data.suite.skill_train_per_client": 8,
        "data.suite.test_per_rule": 4,
        "data.max_length": 64,
        "eval.every": 1,
        "output.dir": str(tmp_path / "run"),
        # fp32 everywhere: the oracle comparisons (lm-eval, autograd by hand) hold to 1e-4 only in
        # fp32, and `auto` would switch to bf16 on CPUs with bf16 units; test_devices covers bf16
        "train.bf16": "off",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture()
def loaded(tiny):
    """The tiny random model as a LoadedModel, shared by the runs of one test."""
    from fedtune.models.loader import LoadedModel

    return LoadedModel(tiny.model, tiny.tokenizer, "tiny-random")


def run_config(tmp_path, out, **extra):
    """A tiny-random RunConfig writing to ``tmp_path/out``; non-string values (sections, lists,
    numbers) go in as JSON, as ``--set`` would parse them."""
    from fedtune.config import load_config

    extra = {"output.dir": str(tmp_path / out), **extra}
    return load_config(None, tiny_overrides(tmp_path, **{k: v if isinstance(v, str) else json.dumps(v)
                                                         for k, v in extra.items()}))


def metrics_rows(cfg) -> list[dict]:
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]


class Interrupted(Exception):
    """Stands in for a kill: raised inside a round, after its clients trained, before its checkpoint."""


def interrupt_in_round(cfg, loaded, stop_round: int) -> None:
    """Run ``cfg`` on the embedded engine and kill it inside round ``stop_round``: after the
    round's clients trained (and wrote their state), before its checkpoint."""
    from fedtune.engine.run_dir import RunDir
    from fedtune.engine.simulation import Simulation
    from fedtune.engine.workspace import build_workspace, fit_federation

    ws = build_workspace(cfg, loaded)
    cfg = fit_federation(cfg, ws.data)
    run_dir = RunDir(cfg.run_dir())
    run_dir.start(cfg, resume=False)
    sim = Simulation(cfg, ws, run_dir)
    execute = sim.executor.execute

    def execute_then_die(r, work):
        replies = execute(r, work)
        if r == stop_round:
            raise Interrupted
        return replies

    sim.executor.execute = execute_then_die
    with pytest.raises(Interrupted):
        sim.run()


def crash_after_checkpoint(cfg, loaded, monkeypatch, round: int = 1) -> None:
    """Run ``cfg`` and kill it between round ``round``'s checkpoint and its metrics row (the
    row then lives only in the checkpoint)."""
    from fedtune.engine.run_dir import RunDir
    from fedtune.engine.runner import run_experiment

    append = RunDir.append_metrics

    def crash(self, row):
        if row["round"] == round:
            raise KeyboardInterrupt(f"killed after the checkpoint of round {round}")
        append(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", crash)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, loaded=loaded, progress=False)
    monkeypatch.setattr(RunDir, "append_metrics", append)
