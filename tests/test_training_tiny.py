"""Real federated training on the tiny random Llama: the run-directory contract, the adapter
export round-trip, and resume equivalence after a hard kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import crash_after_checkpoint, tiny_overrides
from safetensors.torch import load_file

from fedtune.algorithms import ALGORITHMS
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import LoadedModel


def _run(tmp_path, tiny, **extra):
    cfg = load_config(None, tiny_overrides(tmp_path, **extra))
    return cfg, run_experiment(cfg, loaded=LoadedModel(tiny.model, tiny.tokenizer, "tiny-random"), progress=False)


def test_run_directory_contract(tmp_path, tiny):
    cfg, summary = _run(tmp_path, tiny, **{"eval.per_client": True})
    run = cfg.run_dir()
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.html", "adapter/adapter_config.json",
                 "checkpoints/LATEST"):
        assert (run / name).exists(), name
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    for r in rows:
        assert set(r["train"]) == {"0", "1", "2"}
        assert r["bytes_up"] > 0 and r["bytes_down"] > 0 and r["seconds"] > 0
        assert set(r["eval"]["clients"]) == {"0", "1", "2"}
        assert 0 <= r["eval"]["global"]["exact_match"] <= 1
    ckpt = run / "checkpoints" / (run / "checkpoints/LATEST").read_text().strip()
    assert set(os.listdir(ckpt)) >= {"global_adapter.safetensors", "strategy.safetensors", "rng.safetensors", "meta.json"}
    assert json.loads((run / "summary.json").read_text())["final"] == rows[-1]["eval"]
    # Local training moved the adapter: LoRA B is no longer all zeros.
    final = load_file(str(ckpt / "global_adapter.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in final.items() if "lora_B" in k)


def test_training_reduces_loss(tmp_path, tiny):
    cfg, _ = _run(tmp_path, tiny, **{"federation.rounds": 4, "train.steps": 4})
    rows = [json.loads(l) for l in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["eval"]["global"]["loss"] < rows[0]["eval"]["global"]["loss"] - 0.5


def test_adapter_export_round_trip(tmp_path, tiny):
    """The saved adapter reloads with PeftModel.from_pretrained and gives identical logits; the
    merged export gives the same logits as the adapter model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from fedtune.models.export import export_merged
    from fedtune.models.loader import tiny_random

    cfg, _ = _run(tmp_path, tiny)
    trained = tiny.model  # the peft model after the run holds the final global adapter
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    with torch.no_grad():
        expected = trained(input_ids=ids).logits
        fresh = tiny_random(tiny.tokenizer)  # same seed: same base weights
        reloaded = PeftModel.from_pretrained(fresh.model, str(cfg.run_dir() / "adapter")).eval()
        assert torch.equal(reloaded(input_ids=ids).logits, expected)
        out = export_merged(cfg.model, cfg.run_dir() / "adapter", tmp_path / "merged")
        merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-4)


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "fedtune.commands.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_every_algorithm_trains_end_to_end(tmp_path, tiny, algorithm):
    eta = {"algorithm.eta": 0.003} if "eta" in ALGORITHMS[algorithm].params.model_fields else {}
    cfg, summary = _run(tmp_path, tiny, **{"algorithm.name": algorithm, "federation.rounds": 3, "train.steps": 3, **eta})
    rows = [json.loads(l) for l in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert summary["rejected_updates"] == 0
    assert rows[-1]["eval"]["global"]["loss"] < rows[0]["eval"]["global"]["loss"]
    if algorithm == "centralized":
        assert rows[0]["clients"] == [0] and rows[0]["train"]["0"]["steps"] == 3 * 3  # all clients' compute
    if algorithm == "scaffold":  # client control variates live on disk, one file per client
        assert len(list((cfg.run_dir() / "clients").glob("client_*/scaffold_control@*.safetensors"))) == 3


@pytest.mark.parametrize("algorithm", ["scaffold"])  # client state too; every algorithm's in-process resume: test_every_algorithm
def test_resume_after_kill_is_bit_identical(tmp_path, algorithm):
    """Kill -9 a run after a few rounds, --resume it: the final adapter equals an uninterrupted run's."""
    common = tiny_overrides(tmp_path, **{"federation.rounds": 8, "train.steps": 3, "eval.every": 0,
                                         "federation.clients_per_round": 2, "algorithm.name": algorithm})
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("name: resume\n")
    sets = [a for kv in common for a in ("--set", kv)]
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = _cli(["run", str(cfg_path), *sets, "--output", str(ref_dir)])
    assert ref.wait(300) == 0, ref.stderr.read().decode()[-2000:]

    proc = _cli(["run", str(cfg_path), *sets, "--output", str(cut_dir)])
    latest = cut_dir / "checkpoints" / "LATEST"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "round_00002":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut_dir / "summary.json").exists()

    resumed = _cli(["run", str(cfg_path), *sets, "--output", str(cut_dir), "--resume"])
    assert resumed.wait(300) == 0, resumed.stderr.read().decode()[-2000:]
    name = "adapters/client_1/adapter_model.safetensors" if algorithm == "local" else "adapter/adapter_model.safetensors"
    a, b = load_file(str(ref_dir / name)), load_file(str(cut_dir / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(l) for l in (cut_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(8))


@pytest.mark.parametrize("objective", ["dpo", "beta-dpo", "dr-dpo"])
def test_preference_objectives_train_end_to_end(tmp_path, tiny, objective):
    """Federated DPO on the suite's preference pairs: reward accuracy and margin are reported per
    client and on held-out pairs, and training moves held-out rewards the right way."""
    cfg, summary = _run(tmp_path, tiny, **{"train.objective.name": objective, "federation.rounds": 3, "train.steps": 4,
                                           "train.objective.beta": 0.5, "train.lr": 5e-3})
    rows = [json.loads(l) for l in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    client = rows[0]["train"]["0"]
    assert {"reward_accuracy", "margin"} <= client.keys()
    if objective == "beta-dpo":
        assert {"beta_used", "pairs_kept"} <= client.keys()
        assert len(list((cfg.run_dir() / "clients").glob("client_*/beta_dpo_state@*.safetensors"))) == 3
    final = summary["final"]["global"]
    assert {"reward_accuracy", "margin", "exact_match"} <= final.keys()
    assert final["margin"] > 0 and final["reward_accuracy"] > 0.5


def test_sft_then_dpo_stages(tmp_path, tiny):
    """Two stages in one config: DPO starts from the SFT stage's adapter and uses it as reference."""
    stages = "[{train: {objective: sft}}, {train: {objective: {name: dpo, reference: start, beta: 0.5}}}]"
    cfg, summary = _run(tmp_path, tiny, **{"stages": stages, "federation.rounds": 2})
    run = cfg.run_dir()
    assert summary["stages"] == [f"{cfg.name}-stage0", f"{cfg.name}-stage1"]
    sft_final = load_file(str(run / "stage_0" / "adapter" / "adapter_model.safetensors"))
    dpo_start = load_file(str(run / "stage_1" / "checkpoints" / "round_00001" / "global_adapter.safetensors"))
    assert sft_final.keys() == dpo_start.keys()
    rows = [json.loads(l) for l in (run / "stage_1" / "metrics.jsonl").read_text().splitlines()]
    # The reference is the SFT adapter, so at the first DPO step policy == reference: margins start near 0.
    assert abs(rows[0]["train"]["0"]["margin"]) < 0.5
    assert (run / "summary.json").exists()


def test_resume_restores_the_row_of_a_round_checkpointed_just_before_a_crash(tmp_path, tiny, monkeypatch):
    """A crash between round 1's checkpoint and its metrics row: --resume does not rerun round 1,
    so the row comes back from the checkpoint, and the run ends as an uninterrupted one."""
    loaded = LoadedModel(tiny.model, tiny.tokenizer, "tiny-random")
    ref_cfg = load_config(None, tiny_overrides(tmp_path, **{"federation.rounds": 3, "output.dir": str(tmp_path / "ref")}))
    run_experiment(ref_cfg, loaded=loaded, progress=False)
    cfg = load_config(None, tiny_overrides(tmp_path, **{"federation.rounds": 3}))
    crash_after_checkpoint(cfg, loaded, monkeypatch, round=1)
    assert (cfg.run_dir() / "checkpoints" / "LATEST").read_text().strip() == "round_00001"
    assert [json.loads(l)["round"] for l in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()] == [0]

    run_experiment(cfg, resume=True, loaded=loaded, progress=False)
    rows = [json.loads(l) for l in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(l) for l in (ref_cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["train_loss"] == ref_rows[1]["train_loss"] and rows[1]["train"].keys() == ref_rows[1]["train"].keys()
    a, b = load_file(str(ref_cfg.run_dir() / "adapter/adapter_model.safetensors")), \
        load_file(str(cfg.run_dir() / "adapter/adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
