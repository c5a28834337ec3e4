"""The embedded engine's parallel clients (``federation.client_devices``): two CPU worker
processes, each with its own model, give the sequential run's result bit for bit — SCAFFOLD, so
the workers also read and write the clients' control variates in the shared state store."""

from __future__ import annotations

import pytest
import torch
from conftest import metrics_rows, run_config
from safetensors.torch import load_file

from fedtune.config import ConfigError
from fedtune.engine.runner import run_experiment


def test_two_cpu_workers_equal_the_sequential_run_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))
    extra = {"algorithm.name": "scaffold", "federation.clients_per_round": 3, "eval.every": 0, "train.steps": 1}
    sequential = run_config(tmp_path, "sequential", **extra)
    parallel = run_config(tmp_path, "parallel", **extra, **{"federation.client_devices": ["cpu", "cpu"]})
    for cfg in (sequential, parallel):  # both load the model by name, as a worker does
        run_experiment(cfg, progress=False)
    a, b = (load_file(str(c.run_dir() / "adapter" / "adapter_model.safetensors")) for c in (sequential, parallel))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a, rows_b = metrics_rows(sequential), metrics_rows(parallel)
    assert [r["train"] and sorted(r["train"]) for r in rows_a] == [sorted(r["train"]) for r in rows_b] == [
        ["0", "1", "2"], ["0", "1", "2"]]
    assert [r["bytes_up"] for r in rows_a] == [r["bytes_up"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert all(ra["train"][c]["loss"] == rb["train"][c]["loss"] for c in ra["train"])


def test_a_client_device_this_machine_lacks_is_a_one_line_error(tmp_path):
    cfg = run_config(tmp_path, "r", **{"federation.client_devices": ["cpu", "cuda:7"]})
    with pytest.raises(ConfigError, match=r"federation.client_devices: cuda:7 is not visible here \(devices: cpu"):
        run_experiment(cfg, progress=False)
