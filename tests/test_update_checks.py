"""Bad client updates are rejected with a reason, counted, and the round goes on without them."""

import json

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from fedtune.algorithms.update_checks import check_update
from fedtune.client import hooks as hook_registry
from fedtune.client.hooks import TrainingHook
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.adapters import attach_adapter
from fedtune.models.adapters.state import get_adapter
from fedtune.models.loader import LoadedModel, tiny_random
from fedtune.protocol import ClientUpdate

GLOBAL = {"a.lora_A.weight": torch.zeros(2, 3), "a.lora_B.weight": torch.zeros(3, 2)}


def _update(**changes):
    state = {k: v.clone() for k, v in GLOBAL.items()}
    state.update(changes)
    return ClientUpdate(0, {k: v for k, v in state.items() if v is not None}, 5)


@pytest.mark.parametrize("changes,reason", [
    ({}, None),
    ({"a.lora_A.weight": torch.tensor([[float("nan"), 0, 0], [0, 0, 0]])}, "non-finite"),
    ({"a.lora_B.weight": torch.full((3, 2), float("inf"))}, "non-finite"),
    ({"a.lora_B.weight": None}, "missing key"),
    ({"extra.weight": torch.zeros(1)}, "unexpected key"),
    ({"a.lora_A.weight": torch.zeros(3, 2)}, "shape"),
    ({"a.lora_A.weight": torch.zeros(2, 3, dtype=torch.float16)}, "dtype"),
])
def test_check_update_reasons(changes, reason):
    got = check_update(_update(**changes), GLOBAL)
    assert (got is None) if reason is None else (reason in got)


class Poison(TrainingHook):
    """Makes the client's trained adapter non-finite, as a broken or malicious node would."""

    def on_round_end(self, params, update):
        key = next(iter(update.adapter))
        update.adapter[key] = torch.full_like(update.adapter[key], float("nan"))


def _poison_clients(clients):
    def factory(instruction, store):
        return Poison() if instruction.client_id in clients else None
    return factory


@pytest.fixture()
def poison():
    added = []

    def install(clients):
        added.append(_poison_clients(clients))
        hook_registry.HOOK_FACTORIES.append(added[-1])

    yield install
    for f in added:
        hook_registry.HOOK_FACTORIES.remove(f)


def test_engine_rejects_counts_and_continues(tmp_path, tiny, poison):
    poison({1})
    cfg = load_config(None, tiny_overrides(tmp_path))
    summary = run_experiment(cfg, loaded=LoadedModel(tiny.model, tiny.tokenizer, "tiny-random"), progress=False)
    rows = [json.loads(l) for l in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert set(row["rejected"]) == {"1"} and "non-finite" in row["rejected"]["1"]
        assert set(row["train"]) == {"0", "2"}
    assert summary["rejected_updates"] == 2
    final = load_file(str(cfg.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.isfinite(v).all() for v in final.values())


def test_round_without_valid_update_keeps_global(tmp_path, tiny, poison):
    poison({0, 1, 2})
    cfg = load_config(None, tiny_overrides(tmp_path))
    summary = run_experiment(cfg, loaded=LoadedModel(tiny.model, tiny.tokenizer, "tiny-random"), progress=False)
    assert summary["rejected_updates"] == 6
    # The same seed gives the same initial LoRA: the global adapter never moved.
    initial = get_adapter(attach_adapter(tiny_random(tiny.tokenizer).model, cfg.model.adapter, seed=cfg.seed))
    final = load_file(str(cfg.run_dir() / "checkpoints" / "round_00001" / "global_adapter.safetensors"))
    assert all(torch.equal(final[k], initial[k]) for k in initial)
