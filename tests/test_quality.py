"""Data-quality control (FedDQC): IRA by hand on two examples, the filter and the authors'
hierarchical schedule on hand-built scores, and a real run that scores once, trains on each
stage's band and resumes exactly."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import interrupt_in_round, metrics_rows, run_config
from safetensors.torch import load_file

from fedtune.config import ConfigError, load_config
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.logprobs import IGNORE
from fedtune.quality.config import QualityConfig
from fedtune.quality.feddqc import band, kept, stage_of
from fedtune.quality.scores import losses, quality_scores


def _config(tmp_path, out, **extra):
    return run_config(tmp_path, out, **{"federation.rounds": 3, "eval.every": 0, **extra})


def _mean_ce_by_hand(model, ids: list[int], labels: list[int]) -> float:
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    targets = torch.tensor(labels[1:])
    keep = targets != IGNORE
    return float(F.cross_entropy(logits[keep], targets[keep]))


def test_ira_is_the_unconditional_minus_the_conditional_loss_on_two_examples(tmp_path, loaded):
    cfg = _config(tmp_path, "ws")
    ws = build_workspace(cfg, loaded)
    tokens = ws.train_tokens[0]
    two = type(tokens)(tokens.input_ids[:2], tokens.labels[:2])
    pad = ws.tokenizer.pad_token_id
    cond, uncond = losses(ws.model, two, pad)
    ira = quality_scores("ira", ws.model, two, pad, 16, random.Random(0))
    with torch.no_grad():
        for i in range(2):
            ids, labels = two.input_ids[i], two.labels[i]
            answer = [t for t, l in zip(ids, labels) if l != IGNORE]
            by_hand_cond = _mean_ce_by_hand(ws.model, ids, labels)
            by_hand_uncond = _mean_ce_by_hand(ws.model, answer, answer)
            assert cond[i] == pytest.approx(by_hand_cond, rel=1e-4) and uncond[i] == pytest.approx(by_hand_uncond, rel=1e-4)
            assert ira[i] == pytest.approx(by_hand_uncond - by_hand_cond, rel=1e-3, abs=1e-4)
    ifd = quality_scores("ifd", ws.model, two, pad, 16, random.Random(0))
    assert all(s == (c / u if c / u < 1 else float("-inf")) for s, c, u in zip(ifd, cond, uncond))


def test_filter_and_schedule_follow_the_authors_code():
    scores = [0.5, -1.0, 2.0, 0.1, 1.5, -0.3, 0.9, 0.0]
    q = QualityConfig(select_rate=0.75, stages=3)
    order = kept(scores, q)
    assert order == [2, 4, 6, 0, 3, 7]  # int(8 · 0.75) = 6 highest, highest first
    assert [band(order, s, q) for s in range(3)] == [[2, 4], [6, 0], [3, 7]]  # easy -> hard
    hard_first = q.model_copy(update={"order": "hard_to_easy"})
    assert band(order, 0, hard_first) == [7, 3]
    assert kept(scores, QualityConfig(select_rate=None, threshold=0.5)) == [2, 4, 6, 0]
    assert [stage_of(r, 10, 3) for r in range(10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # R // S rounds each
    with pytest.raises(ValueError, match="not both"):
        QualityConfig(select_rate=0.5, threshold=0.0)


def test_a_feddqc_run_scores_once_trains_each_band_and_resumes_bit_identical(tmp_path, loaded):
    extra = {"quality": {"score": "ira", "select_rate": 0.5, "stages": 3}, "federation.clients_per_round": 2,
             "data.suite.noise_rate": [0.5, 0.0, 0.5]}
    whole = _config(tmp_path, "whole", **extra)
    run_experiment(whole, loaded=loaded, progress=False)
    rows = metrics_rows(whole)
    for r in rows:
        for m in r["train"].values():
            assert m["quality_stage"] == r["round"] and m["quality_pool"] == m["quality_kept"] // 3
    # each client scores the first round it trains, later rounds reuse the stored scores
    first = {}
    for r in rows:
        for c, m in r["train"].items():
            assert (m["seconds_scoring"] > 0) == (c not in first)
            first.setdefault(c, r["round"])
    report = json.loads((whole.run_dir() / "data_report.json").read_text())["quality"]
    assert set(report) == first.keys() and all(m["quality_dropped"] == m["quality_kept"] for m in report.values())
    page = (whole.run_dir() / "report.html").read_text()
    assert 'alt="quality scores"' in page and 'alt="scores noisy vs clean"' in page
    data = json.loads((whole.run_dir() / "data_report.json").read_text())["clients"]
    assert 0 < len(data["client_0"]["noisy"]) < data["client_0"]["train"] and "noisy" not in data["client_1"]
    cut = _config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=2)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_quality_control_with_dp_sgd_is_refused():
    with pytest.raises(ConfigError, match="data-dependent step"):
        load_config(None, ["quality={score: ira}", "privacy.sample_level={noise_multiplier: 1}"])
