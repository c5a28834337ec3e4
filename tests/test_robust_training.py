"""Attacks and robust rules in real federated training on tiny-random: the harm is recorded,
robust rules resist what breaks the mean, the dynamic rule resumes exactly, and impossible
configurations are refused at load time."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_in_round, metrics_rows, run_config
from safetensors.torch import load_file

from fedtune.config import ConfigError, load_config
from fedtune.engine.runner import run_experiment


def _config(tmp_path, out, **extra):
    return run_config(tmp_path, out, **{"federation.num_clients": 5, "federation.rounds": 2, "train.steps": 2,
                                        "eval.every": 0, **extra})


def _run(tmp_path, loaded, out, **extra):
    cfg = _config(tmp_path, out, **extra)
    run_experiment(cfg, loaded=loaded, progress=False)
    return metrics_rows(cfg)


def test_a_scaling_attack_moves_the_mean_far_and_the_median_resists(tmp_path, loaded):
    attack = {"method": "scaling", "factor": 50.0, "clients": [2]}
    mean = _run(tmp_path, loaded, "mean", attack=attack)
    median = _run(tmp_path, loaded, "median", attack=attack, **{"aggregation.reducer": {"name": "median", "f": 1}})
    for m, r in zip(mean, median):
        assert m["attack"]["clients"] == [2] and r["aggregation"]["rule"] == "median"
        ratio_mean = m["attack"]["distance_from_benign_mean"] / m["attack"]["benign_mean_norm"]
        ratio_median = r["attack"]["distance_from_benign_mean"] / r["attack"]["benign_mean_norm"]
        assert ratio_mean > 5 and ratio_median < 2, (ratio_mean, ratio_median)
    assert 'alt="attack harm"' in (tmp_path / "median" / "report.html").read_text()  # the harm is plotted


def test_krum_never_keeps_a_sign_flipped_boosted_attacker(tmp_path, loaded):
    rows = _run(tmp_path, loaded, "krum", attack={"method": "sign_flip", "scale": 20.0, "clients": [0]},
                **{"aggregation.reducer": {"name": "multi_krum", "f": 1, "m": 3}})
    for r in rows:
        assert 0 not in r["aggregation"]["kept"] and len(r["aggregation"]["kept"]) == 3


def test_dynamic_rule_under_attack_resumes_bit_identical(tmp_path, loaded):
    """The per-round draw and the attackers are stateless: a run killed in round 1 and resumed
    draws the same rules and ends with the uninterrupted run's adapter."""
    extra = {"federation.rounds": 3, "attack": {"method": "alie", "clients": 0.2},
             "aggregation.reducer": {"name": "dynamic", "pool": ["median", "trimmed_mean", "krum"], "f": 1}}
    whole = _run(tmp_path, loaded, "whole", **extra)
    cut = _config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    assert [r["aggregation"]["rule"] for r in metrics_rows(cut)] == [r["aggregation"]["rule"] for r in whole]
    assert [r["attack"]["clients"] for r in metrics_rows(cut)] == [r["attack"]["clients"] for r in whole]
    a = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides,message", [
    (["aggregation.reducer={name: krum, f: 2}"], r"krum with these parameters needs at least 7 clients per round \(2f \+ 2 < clients per round\), but federation samples 4"),
    (["aggregation.reducer={name: bulyan, f: 1}"], r"needs at least 7 clients per round \(4f \+ 3 <= clients per round\)"),
    (["aggregation.reducer={name: dynamic, f: 1}"], r"dynamic .*needs at least 7 clients per round \(the strictest rule of the pool\)"),
    (["attack={method: alie, clients: [9]}"], r"'attack.clients': client 9 does not exist"),
    (["attack={method: nope}"], r"'attack.method': unknown attack 'nope'"),
    (["aggregation.reducer={name: dynamic, pool: [dynamic]}"], r"cannot contain dynamic"),
])
def test_impossible_robust_configurations_are_refused_at_load_time(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_a_randomized_attack_resumes_bit_identical(tmp_path, loaded):
    """The Gaussian attack draws its noise key by key: a resumed run (whose adapter comes back
    from the checkpoint with its keys in another order) draws the same."""
    extra = {"federation.rounds": 3, "attack": {"method": "gaussian", "clients": [1]}}
    _run(tmp_path, loaded, "whole", **extra)
    cut = _config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=2)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    a = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
