"""Every registered algorithm, by registration (PEFT's TEST_CASES idea): a new algorithm file is
tested here without editing this file.

Each one trains on tiny-random for 2 rounds, is interrupted in the middle of round 1 (clients of
that round have trained and written their state, no checkpoint yet), resumes, and must end with
the uninterrupted run's adapter(s) bit for bit.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import interrupt_in_round, tiny_overrides
from safetensors.torch import load_file

from fedtune.algorithms import ALGORITHMS
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import LoadedModel


def _config(tmp_path, name: str, out: str):
    extra = {"algorithm.name": name, "federation.rounds": 2, "train.steps": 2, "eval.every": 0,
             "federation.clients_per_round": 2, "output.dir": str(tmp_path / out)}
    if "eta" in ALGORITHMS[name].params.model_fields:  # the adaptive server optimizers: a step that fits 2 rounds
        extra["algorithm.eta"] = 0.003
    return load_config(None, tiny_overrides(tmp_path, **extra))


def _adapters(run_dir) -> dict[str, dict[str, torch.Tensor]]:
    """Every final adapter a run saved: adapter/ and, with personal adapters, adapters/client_<i>/."""
    return {str(p.relative_to(run_dir)): load_file(str(p)) for p in sorted(run_dir.glob("adapter*/**/*.safetensors"))}


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_algorithm_resumes_bit_identical(tmp_path, tiny, name):
    loaded = LoadedModel(tiny.model, tiny.tokenizer, "tiny-random")
    reference = _config(tmp_path, name, "reference")
    run_experiment(reference, loaded=loaded, progress=False)

    cut = _config(tmp_path, name, "cut")
    interrupt_in_round(cut, loaded, stop_round=1)
    assert not (cut.run_dir() / "summary.json").exists()
    run_experiment(cut, resume=True, loaded=loaded, progress=False)

    expected, got = _adapters(reference.run_dir()), _adapters(cut.run_dir())
    assert expected and expected.keys() == got.keys()
    for path, tensors in expected.items():
        assert tensors.keys() == got[path].keys()
        assert all(torch.equal(tensors[k], got[path][k]) for k in tensors), f"{name}: {path} differs after resume"
    rows = [json.loads(line) for line in (cut.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    # training happened: a final adapter moved (LoRA B starts at 0)
    assert any(v.abs().sum() > 0 for tensors in got.values() for k, v in tensors.items() if "lora_B" in k)
