"""Tuning without the model (docs/offsite.md): offsite-tuning's emulator and FedSP's auxiliary
model. Structure by hand (which owner layers the client model copies, which it shares), the
plug-in renaming against peft's own loader, distillation lowering its loss, and end-to-end runs
that resume bit-identical while no dropped middle layer — with distillation no middle weight at
all — reaches the clients' model, their state or the wire."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import interrupt_in_round, metrics_rows, run_config
from peft import PeftModel
from safetensors.torch import load_file

from fedtune.adapter_state import num_bytes
from fedtune.config import ConfigError
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.loader import LoadedModel, tiny_random
from fedtune.offsite.layers import decoder_layers, uniform_layers


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def six_layers(smollm2_tokenizer):
    tiny = tiny_random(smollm2_tokenizer, layers=6)
    return LoadedModel(tiny.model, tiny.tokenizer, "tiny-random")


def owner_text(tmp_path):
    """The owner's own distillation text: a JSONL of instruction/response records."""
    path = tmp_path / "owner.jsonl"
    rows = [{"instruction": f"Describe the number {i}.", "response": f"{i} is {'even' if i % 2 == 0 else 'odd'}."}
            for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_uniform_layer_drop_is_fs_llms_stride():
    assert uniform_layers(4, 2) == [0, 3]
    assert uniform_layers(5, 3) == [0, 2, 4]
    assert uniform_layers(26, 13) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 25]  # int(i·25/12)
    assert uniform_layers(7, 1) == [0] and uniform_layers(7, 0) == []


def test_emulator_keeps_bottom_top_and_a_uniform_middle_and_plugs_into_the_full_model(tmp_path, six_layers):
    full = [layer.self_attn.q_proj.weight.detach().clone() for layer in decoder_layers(six_layers.model)]
    cfg = run_config(tmp_path, "r", offsite={"method": "emulator", "bottom": 1, "top": 1, "drop_ratio": 0.5})
    ws = build_workspace(cfg, six_layers)
    emulator = decoder_layers(ws.client.model)
    assert ws.client.layout["sources"] == [0, 1, 4, 5]  # middle 1..4, round(4·0.5) = 2 kept: 1 and 4
    for i, source in enumerate([0, 1, 4, 5]):
        assert torch.equal(emulator[i].self_attn.q_proj.weight, full[source])
        assert emulator[i].self_attn.layer_idx == i
    assert {int(k.split(".layers.")[1].split(".")[0]) for k in ws.initial_adapter} == {0, 3}  # adapter layers only
    # the plug-in: the adapter of emulator layer 3 is the full model's layer 5
    trained = {k: torch.randn_like(v) for k, v in ws.initial_adapter.items()}
    server = ws.to_server(trained)
    assert {int(k.split(".layers.")[1].split(".")[0]) for k in server} == {0, 5}
    from fedtune.models.adapters.state import set_adapter

    set_adapter(ws.model, server)
    ws.model.save_pretrained(str(tmp_path / "plugged"))
    reloaded = PeftModel.from_pretrained(tiny_random(six_layers.tokenizer, layers=6).model, str(tmp_path / "plugged"))
    a = reloaded.base_model.model.model.layers[5].self_attn.q_proj.lora_A["default"].weight
    key = next(k for k in trained if ".layers.3.self_attn.q_proj.lora_A" in k)
    assert torch.equal(a, trained[key])


def test_an_adapter_that_cannot_sit_in_some_layers_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="emulator trains a lora / dora adapter"):
        run_config(tmp_path, "r", offsite={"method": "emulator"}, **{"model.adapter": {"method": "prefix"}})
    with pytest.raises(ConfigError, match="fedsp trains a prefix / prompt / p-tuning adapter"):
        run_config(tmp_path, "r", offsite={"method": "fedsp"})


def _tensors(folder) -> list[torch.Tensor]:
    return [t for f in folder.rglob("*.safetensors") for t in load_file(str(f)).values()]


def _contains(tensors: list[torch.Tensor], weight: torch.Tensor) -> bool:
    return any(t.shape == weight.shape and torch.equal(t, weight) for t in tensors)


def test_offsite_tuning_run_resumes_and_no_middle_layer_leaves_the_owner(tmp_path, six_layers):
    owner_middle = {i: [p.detach().clone() for p in layer.parameters()]
                    for i, layer in enumerate(decoder_layers(six_layers.model)) if 1 <= i <= 4}
    offsite = {"method": "emulator", "bottom": 1, "top": 1, "drop_ratio": 0.5,
               "distill": {"source": owner_text(tmp_path), "steps": 6, "lr": 1e-3, "batch_size": 2}}
    whole = run_config(tmp_path, "whole", offsite=offsite, **{"federation.rounds": 2})
    summary = run_experiment(whole, loaded=six_layers, progress=False)
    first, last = summary["offsite"]["distill_loss"]
    assert last < first  # the kept middle moved towards the original middle's output

    final = summary["final"]
    assert {"global", "emulator"} <= final.keys()  # the plug-in (the full model) and the emulator itself
    assert final["global"]["loss"] != final["emulator"]["loss"]
    rows = metrics_rows(whole)
    adapter_bytes = num_bytes(build_workspace(whole, six_layers).initial_adapter)
    assert all(r["bytes_up"] == 3 * adapter_bytes for r in rows)  # only the adapter travels up

    # what reached the clients: the emulator's directory, their state, every adapter on the wire
    client_side = _tensors(tmp_path / "cache" / "client_models") + _tensors(whole.run_dir() / "checkpoints")
    client_side += _tensors(whole.run_dir() / "client_adapter")
    for layer, weights in owner_middle.items():
        assert not any(_contains(client_side, w) for w in weights if w.dim() == 2), f"owner layer {layer} leaked"

    cut = run_config(tmp_path, "cut", offsite=offsite, **{"federation.rounds": 2})
    interrupt_in_round(cut, six_layers, stop_round=1)
    run_experiment(cut, resume=True, loaded=six_layers, progress=False)
    for name in ("adapter", "client_adapter"):
        a = load_file(str(whole.run_dir() / name / "adapter_model.safetensors"))
        b = load_file(str(cut.run_dir() / name / "adapter_model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_without_distillation_only_the_kept_middle_layers_reach_the_clients(tmp_path, six_layers):
    layers = decoder_layers(six_layers.model)
    dropped = [layers[i].mlp.down_proj.weight.detach().clone() for i in (2, 3)]
    kept = [layers[i].mlp.down_proj.weight.detach().clone() for i in (1, 4)]
    cfg = run_config(tmp_path, "r", offsite={"method": "emulator", "bottom": 1, "top": 1},
                     **{"federation.rounds": 1, "eval.every": 0})
    run_experiment(cfg, loaded=six_layers, progress=False)
    client_side = _tensors(tmp_path / "cache" / "client_models")
    assert all(_contains(client_side, w) for w in kept)
    assert not any(_contains(client_side, w) for w in dropped)


def test_fedsp_shares_one_layer_alternates_and_sends_only_the_prompt(tmp_path, loaded):
    owner = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    offsite = {"method": "fedsp", "distill": {"source": owner_text(tmp_path), "steps": 6, "lr": 1e-3,
                                              "batch_size": 2}}
    extra = {"offsite": offsite, "model.adapter": {"method": "prefix", "num_virtual_tokens": 4},
             "federation.rounds": 2}
    whole = run_config(tmp_path, "whole", **extra)
    ws = build_workspace(whole, loaded)
    aux = decoder_layers(ws.client.model)
    assert len(aux) == 2 and aux[1] is not aux[0]  # the server's depth, two modules ...
    assert aux[1].mlp.up_proj.weight is aux[0].mlp.up_proj.weight  # ... sharing one layer's weights
    assert aux[1].self_attn.layer_idx == 1
    prompt_keys = set(ws.initial_adapter)
    assert all(k.startswith("prompt_encoder.") for k in prompt_keys)

    summary = run_experiment(whole, loaded=loaded, progress=False)
    first, last = summary["offsite"]["distill_loss"]
    assert last < first
    rows = metrics_rows(whole)
    assert all(r["bytes_up"] == 3 * num_bytes(ws.initial_adapter) for r in rows)  # the prompt only
    assert all("model_loss" in m for r in rows for m in r["train"].values())
    # each client's own auxiliary model trained, differently, and stayed in its state
    own = [load_file(str(next((whole.run_dir() / "clients" / f"client_{c:05d}").glob("personal_model@*"))))
           for c in range(3)]
    start = load_file(str(ws.client.directory / "model.safetensors"))
    key = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(own[0][key], start[key]) and not torch.equal(own[0][key], own[1][key])
    # the owner's model never trained: its weights are the ones it started with
    base = loaded.model.get_base_model().state_dict()
    assert all(torch.equal(base[k], v) for k, v in owner.items())

    cut = run_config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    a = load_file(str(whole.run_dir() / "client_adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "client_adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for c in range(3):
        mine = load_file(str(next((cut.run_dir() / "clients" / f"client_{c:05d}").glob("personal_model@*"))))
        theirs = load_file(str(next((whole.run_dir() / "clients" / f"client_{c:05d}").glob("personal_model@*"))))
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
