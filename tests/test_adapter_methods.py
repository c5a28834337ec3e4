"""Every registered adapter method: the adapter state moves as tensors, only the method's own
parameters train, a 2-round run changes them, and an interrupted run resumes to the same adapter
bit for bit; each method saves a PEFT adapter that ``PeftModel.from_pretrained`` loads."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_in_round, run_config
from peft import PeftModel
from safetensors.torch import load_file

from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.adapters import ADAPTERS
from fedtune.models.adapters.state import adapter_parameters
from fedtune.models.loader import tiny_random

# what each method's tensors are called in the adapter state
OWN_TENSORS = {"lora": ("lora_A", "lora_B"), "dora": ("lora_A", "lora_B", "lora_magnitude_vector"), "ia3": ("ia3_l",)}


def test_every_registered_method_is_covered():
    assert set(ADAPTERS.names()) == set(OWN_TENSORS)


@pytest.mark.parametrize("method", sorted(OWN_TENSORS))
def test_a_method_trains_its_own_tensors_and_resumes_bit_identical(tmp_path, loaded, method):
    extra = {"model.adapter": {"method": method}, "federation.rounds": 2, "eval.every": 0}
    whole = run_config(tmp_path, "whole", **extra)
    ws = build_workspace(whole, loaded)
    start = ws.initial_adapter
    assert start and all(any(part in k for part in OWN_TENSORS[method]) for k in start)
    assert set(adapter_parameters(ws.model)) == set(start)  # every state tensor is a trainable parameter
    run_experiment(whole, loaded=loaded, progress=False)
    final = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert final.keys() == start.keys()
    assert any(not torch.equal(final[k], start[k]) for k in start)  # training moved the method's tensors

    cut = run_config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    resumed = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(final[k], resumed[k]) for k in final)

    reloaded = PeftModel.from_pretrained(tiny_random(loaded.tokenizer).model, str(whole.run_dir() / "adapter"))
    assert reloaded.peft_config["default"].peft_type.value.lower() == ("lora" if method == "dora" else method)
