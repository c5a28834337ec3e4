"""Experiment tracking on the real backends: what a tiny run logs to TensorBoard and MLflow, read
back with their own readers, equals metrics.jsonl; a resumed run continues the same MLflow run
with one value per round."""

from __future__ import annotations

import json

import pytest
from conftest import (
    crash_after_checkpoint,
    interrupt_in_round,
    metrics_rows,
    run_config,
)

from fedtune.config import ConfigError
from fedtune.engine.runner import run_experiment
from fedtune.tracking import TRACKERS, check_available, flatten

# the scalars compared with metrics.jsonl, as (tracked key, path in the row)
KEYS = {"train_loss": ("train_loss",), "eval/global/exact_match": ("eval", "global", "exact_match"),
        "eval/global/loss": ("eval", "global", "loss"), "bytes_up": ("bytes_up",)}


def _value(row: dict, path: tuple) -> float:
    for part in path:
        row = row[part]
    return row


def test_flatten_keeps_every_numeric_leaf():
    row = {"round": 3, "train_loss": 1.5, "bytes_up": 10, "ok": True, "note": "x", "sampled": [0, 2], "none": None,
           "eval": {"global": {"exact_match": 0.25, "loss": 2.0}, "tasks": {"gsm8k": {"accuracy": 1}}},
           "privacy": {"client_level": {"epsilon": 0.5, "delta": 1e-5}}, "train": {"0": {"loss": 1.0}}}
    assert flatten(row) == {"train_loss": 1.5, "bytes_up": 10.0, "eval/global/exact_match": 0.25, "eval/global/loss": 2.0,
                            "eval/tasks/gsm8k/accuracy": 1.0, "privacy/client_level/epsilon": 0.5,
                            "privacy/client_level/delta": 1e-5, "train/0/loss": 1.0}
    assert flatten({"a": {"b": 1}}, sep=".") == {"a.b": 1.0}


def test_tracking_is_a_choice_of_backend(tmp_path):
    assert run_config(tmp_path, "run").tracking is None  # off by default
    assert TRACKERS.names() == ["mlflow", "tensorboard"]
    cfg = run_config(tmp_path, "run", **{"tracking.backend": "tensorboard", "tracking.log_dir": str(tmp_path / "tb")})
    assert cfg.tracking.log_dir == str(tmp_path / "tb")
    with pytest.raises(ConfigError, match="tracking.url"):
        run_config(tmp_path, "run", **{"tracking.backend": "mlflow", "tracking.url": "x"})


def test_missing_backend_package_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"tracking.backend=mlflow needs mlflow-skinny: pip install 'fedtune\[tracking\]'"):
        check_available(TRACKERS.config("mlflow"))


def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path, loaded):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = run_config(tmp_path, "tb", **{"tracking.backend": "tensorboard"})
    run_experiment(cfg, loaded=loaded, progress=False)
    rows = metrics_rows(cfg)
    events = EventAccumulator(str(cfg.run_dir() / "tensorboard"))
    events.Reload()
    for key, path in KEYS.items():
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [0, 1], key
        assert [e.value for e in logged] == pytest.approx([_value(r, path) for r in rows], rel=1e-6), key
    tags = events.Tags()
    assert "train/0/loss" in tags["scalars"] and "config/text_summary" in tags["tensors"]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def _mlflow(cfg):
    from mlflow.tracking import MlflowClient

    state = json.loads((cfg.run_dir() / "mlflow_run.json").read_text())
    return MlflowClient(tracking_uri=state["tracking_uri"]), state["run_id"]


def _assert_one_value_per_round(client, run_id, rows):
    for key, path in KEYS.items():
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(r["round"], _value(r, path)) for r in rows], key


def test_mlflow_logs_params_metrics_and_artifacts(tmp_path, loaded):
    cfg = run_config(tmp_path, "ml", **{"tracking.backend": "mlflow", "tracking.experiment": "fedtune-test"})
    run_experiment(cfg, loaded=loaded, progress=False)
    client, run_id = _mlflow(cfg)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and client.get_experiment(run.info.experiment_id).name == "fedtune-test"
    assert run.data.params["federation.rounds"] == "2" and run.data.params["model.name"] == "tiny-random"
    assert run.data.params["tracking.backend"] == "mlflow"
    _assert_one_value_per_round(client, run_id, metrics_rows(cfg))
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"adapter", "summary.json", "config.yaml"} <= artifacts
    assert "adapter/adapter_model.safetensors" in {a.path for a in client.list_artifacts(run_id, "adapter")}
    local = client.download_artifacts(run_id, "summary.json", str(tmp_path))
    assert json.loads(open(local).read()) == json.loads((cfg.run_dir() / "summary.json").read_text())


def test_mlflow_resume_continues_the_same_run_once_per_round(tmp_path, loaded, monkeypatch):
    """A crash between round 1's checkpoint and its row (the row then reaches metrics.jsonl only on
    --resume, from the checkpoint): the resumed process logs round 1 and 2 to the same MLflow run;
    resuming the finished run again logs nothing twice."""
    cfg = run_config(tmp_path, "resume", **{"federation.rounds": 3, "tracking.backend": "mlflow"})
    crash_after_checkpoint(cfg, loaded, monkeypatch, round=1)
    client, run_id = _mlflow(cfg)
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [0]
    run_experiment(cfg, resume=True, loaded=loaded, progress=False)
    run_experiment(cfg, resume=True, loaded=loaded, progress=False)  # finished already: nothing to log
    assert _mlflow(cfg)[1] == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    rows = metrics_rows(cfg)
    assert [r["round"] for r in rows] == [0, 1, 2]
    _assert_one_value_per_round(client, run_id, rows)


def test_tensorboard_resume_purges_the_rerun_rounds(tmp_path, loaded):
    """Killed inside round 1 with no checkpoint yet (round 0 logged, checkpoint_every 2): --resume
    reruns round 0 and TensorBoard drops the first process's events, so each scalar has one value
    per round, equal to metrics.jsonl."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = run_config(tmp_path, "tbresume", **{"federation.rounds": 3, "output.checkpoint_every": 2,
                                                     "tracking.backend": "tensorboard"})
    interrupt_in_round(cfg, loaded, stop_round=1)
    assert not (cfg.run_dir() / "checkpoints" / "LATEST").exists() and len(metrics_rows(cfg)) == 1
    run_experiment(cfg, resume=True, loaded=loaded, progress=False)
    rows = metrics_rows(cfg)
    events = EventAccumulator(str(cfg.run_dir() / "tensorboard"))
    events.Reload()
    for key, path in KEYS.items():
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [0, 1, 2], key
        assert [e.value for e in logged] == pytest.approx([_value(r, path) for r in rows], rel=1e-6), key
