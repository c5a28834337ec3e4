"""Shared fixtures: the tiny random model (loaded once per session) and small configs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
