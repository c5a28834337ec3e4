"""Where the model runs, checked on a CPU: ``model.device`` resolution and its errors, adapter
states that stay on the CPU (so checkpoints resume across devices), the per-device precision
choice, ``model.quantization``'s validation and its one-line refusal here, and gradient
checkpointing that trains the same adapter as plain backward."""

from __future__ import annotations

import pytest
import torch
from conftest import crash_after_checkpoint, run_config
from typer.testing import CliRunner

from fedtune.client.state_store import ClientStateStore
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.config import ConfigError, load_config
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.adapters import attach_adapter
from fedtune.models.adapters.state import get_adapter, set_adapter
from fedtune.models.config import ModelConfig, QuantizationConfig
from fedtune.models.device import resolve_device
from fedtune.models.loader import LoadedModel, load_base
from fedtune.models.quantization import bnb_config, check_quantization
from fedtune.precision import Precision, choose, cpu_has_bf16_units, precision_for
from fedtune.protocol import ClientInstruction

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine")


# ------------------------------------------------------------------ model.device


@no_gpu
def test_auto_and_cpu_resolve_to_the_cpu_here():
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")


@no_gpu
@pytest.mark.parametrize("setting", ["cuda", "cuda:0", "mps"])
def test_a_device_this_machine_lacks_is_a_one_line_error_naming_the_key(setting, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=rf"^model\.device: {setting.split(':')[0]}.* not .*\(devices: cpu\)$"):
        resolve_device(setting)


def test_a_gpu_index_past_the_visible_ones_lists_them(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"model\.device: cuda:3 is not visible here \(devices: cpu, cuda:0"):
        resolve_device("cuda:3")


def test_device_names_are_validated_in_the_config():
    assert load_config(None, ["model.device=cuda:1"]).model.device == "cuda:1"
    with pytest.raises(ConfigError, match="'model.device'"):
        load_config(None, ["model.device=gpu"])


# ------------------------------------------------------------------ adapter states stay on the CPU


def test_adapter_state_round_trip_is_cpu_copies(tiny):
    model = attach_adapter(tiny.model, ModelConfig().adapter, seed=0)  # LoRA
    state = get_adapter(model)
    assert state and all(t.device.type == "cpu" for t in state.values())
    changed = {k: t + 1 for k, t in state.items()}
    set_adapter(model, changed)
    again = get_adapter(model)
    assert all(torch.equal(again[k], changed[k]) for k in state)
    next(iter(again.values())).zero_()  # a copy: editing it leaves the model alone
    assert all(torch.equal(get_adapter(model)[k], changed[k]) for k in state)
    # set copies into the model's own tensors (the same copy_ that moves a CPU state onto a GPU)
    set_adapter(model, {k: t.double() for k, t in state.items()})
    assert all(t.dtype == torch.float32 for t in get_adapter(model).values())


def test_checkpoint_written_on_one_device_setting_resumes_on_another(tmp_path, loaded, monkeypatch):
    """A run on model.device=cpu crashes after round 1's checkpoint; resumed with model.device=auto
    it ends as the uninterrupted run, and every checkpointed tensor is a CPU tensor."""
    rounds = {"federation.rounds": 3, "eval.every": 0}
    ref = run_config(tmp_path, "ref", **rounds)
    run_experiment(ref, loaded=loaded, progress=False)
    cut = run_config(tmp_path, "cut", **rounds, **{"model.device": "cpu"})
    crash_after_checkpoint(cut, loaded, monkeypatch, round=1)
    from safetensors.torch import load_file

    for f in (cut.run_dir() / "checkpoints").rglob("*.safetensors"):
        assert all(t.device.type == "cpu" for t in load_file(str(f)).values())
    resumed = cut.model_copy(update={"model": cut.model.model_copy(update={"device": "auto"})})
    run_experiment(resumed, resume=True, loaded=loaded, progress=False)
    name = "adapter/adapter_model.safetensors"
    a, b = load_file(str(ref.run_dir() / name)), load_file(str(cut.run_dir() / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ precision per device


@pytest.mark.parametrize("setting,device,cuda_bf16,cpu_units,expected", [
    ("auto", "cpu", False, False, None),  # AVX2-only CPU: emulated bf16 is slower than fp32
    ("auto", "cpu", False, True, torch.bfloat16),  # AVX512_BF16 / AMX
    ("on", "cpu", False, False, torch.bfloat16),
    ("off", "cpu", False, True, None),
    ("auto", "cuda", True, False, torch.bfloat16),  # Ampere and later
    ("auto", "cuda", False, False, torch.float16),  # T4, V100: fp16 with loss scaling
    ("on", "cuda", False, False, torch.float16),
    ("off", "cuda", True, False, None),
    ("auto", "mps", False, False, None),
    ("on", "mps", False, False, torch.bfloat16),
])
def test_precision_choice(setting, device, cuda_bf16, cpu_units, expected):
    assert choose(setting, device, cuda_bf16, cpu_units) == expected


def test_only_fp16_scales_the_loss():
    assert Precision("cuda", torch.float16).loss_scaling
    assert not Precision("cuda", torch.bfloat16).loss_scaling and not Precision("cpu").loss_scaling
    scaler = Precision("cpu").scaler()
    assert not scaler.is_enabled() and scaler.get_scale() == 1.0


def test_auto_on_this_cpu_follows_its_bf16_units():
    expected = torch.bfloat16 if cpu_has_bf16_units() else None
    assert precision_for("auto", torch.device("cpu")) == Precision("cpu", expected)


# ------------------------------------------------------------------ model.quantization


def test_quantization_type_is_four_bit_only():
    assert load_config(None, ['model.quantization={"bits": 4, "type": "fp4", "double_quant": true}']) \
        .model.quantization.type == "fp4"
    with pytest.raises(ConfigError, match="'model.quantization'.*4-bit quantization only"):
        load_config(None, ['model.quantization={"bits": 8, "type": "nf4"}'])
    with pytest.raises(ConfigError, match="'model.quantization.bits'"):
        load_config(None, ['model.quantization={"bits": 3}'])


@no_gpu
def test_quantization_without_a_gpu_is_refused_before_loading(tmp_path):
    cfg = load_config(None, ['model.quantization={"bits": 4}', "model.name=some-org/some-model"])
    refused = r"^model\.quantization: .*need a CUDA device, but model\.device resolves to cpu"
    with pytest.raises(ConfigError, match=refused):
        load_base(cfg.model)
    (tmp_path / "c.yaml").write_text(f"model:\n  name: some-org/some-model\n  quantization: {{bits: 8}}\n"
                                     f"output:\n  dir: {tmp_path}/run\n")
    from fedtune.commands.cli import app

    result = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "model.quantization" in result.stderr
    assert "Traceback" not in result.output + result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_quantization_maps_to_bitsandbytes_settings():
    four = bnb_config(QuantizationConfig(bits=4, double_quant=True, compute_dtype="float16"))
    assert four.load_in_4bit and not four.load_in_8bit
    assert (four.bnb_4bit_quant_type, four.bnb_4bit_use_double_quant, four.bnb_4bit_compute_dtype) == \
        ("nf4", True, torch.float16)
    assert bnb_config(QuantizationConfig(bits=4, type="fp4")).bnb_4bit_quant_type == "fp4"
    eight = bnb_config(QuantizationConfig(bits=8))
    assert eight.load_in_8bit and not eight.load_in_4bit


def test_quantization_without_bitsandbytes_says_how_to_install_it(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else find_spec(name))
    with pytest.raises(ConfigError, match=r"bitsandbytes is not installed; pip install 'fedtune\[gpu\]'"):
        check_quantization(QuantizationConfig(bits=4), torch.device("cuda", 0), "some-org/some-model", None)
    with pytest.raises(ConfigError, match=r"model\.quantization: tiny-random is not a Hugging Face checkpoint"):
        check_quantization(QuantizationConfig(bits=4), torch.device("cuda", 0), "tiny-random", None)


# ------------------------------------------------------------------ gradient checkpointing


def _one_round(tmp_path, loaded, method: str, checkpointing: bool) -> tuple[dict, dict]:
    """(adapter after one round of client 0, the adapter it started from)."""
    cfg = run_config(tmp_path, f"gc{checkpointing}", **{"train.gradient_checkpointing": checkpointing,
                                                        "model.adapter": {"method": method}})
    ws = build_workspace(cfg, loaded)
    trainer = LocalTrainer(ws.model, ws.tokenizer, cfg.train, ClientStateStore(tmp_path / f"store{checkpointing}"))
    update = trainer.train(ClientInstruction(0, 0, cfg.train.lr, cfg.train.steps), ws.initial_adapter,
                           LocalData(0, ws.train_tokens[0]))
    return update.adapter, ws.initial_adapter


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_gradient_checkpointing_trains_the_same_adapter(tmp_path, tiny, method):
    loaded = LoadedModel(tiny.model, tiny.tokenizer, "tiny-random")
    plain, start = _one_round(tmp_path, loaded, method, False)
    checkpointed, _ = _one_round(tmp_path, loaded, method, True)
    assert loaded.model.get_base_model().is_gradient_checkpointing
    assert any(not torch.equal(plain[k], start[k]) for k in plain)  # it trained
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6) for k in plain)


def test_gradient_checkpointing_is_refused_under_dp_sgd_and_with_prefix_tuning():
    with pytest.raises(ConfigError, match="'train.gradient_checkpointing'.*privacy.sample_level"):
        load_config(None, ["privacy.sample_level={noise_multiplier: 1}", "train.gradient_checkpointing=true"])
    with pytest.raises(ConfigError, match="'train.gradient_checkpointing'.*prefix tuning"):
        load_config(None, ["model.adapter={method: prefix}", "train.gradient_checkpointing=true"])

