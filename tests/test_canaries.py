"""Canaries (Carlini et al. 2019, "The Secret Sharer"): planting is seeded, reaches only the chosen
clients' training splits and is counted; the rank/exposure arithmetic; a model trained on a canary
exposes it fully while an untrained one does not; `fedtune eval --canaries` on a run directory."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_overrides
from rich.console import Console
from typer.testing import CliRunner

from fedtune.commands.cli import app
from fedtune.commands.evaluate import evaluate_target
from fedtune.commands.summary_table import print_eval
from fedtune.config import ConfigError, from_dict, load_config
from fedtune.data.build import build_federated_data
from fedtune.data.canaries import CanaryConfig, make_canaries
from fedtune.data.tokenize import tokenize_sft
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.eval.canary_exposure import candidate_secrets, rank_and_exposure
from fedtune.eval.evaluator import Evaluator
from fedtune.models.adapters.state import get_adapter
from fedtune.models.logprobs import collate, response_logps

runner = CliRunner()
SUITE = {"entities_per_client": 2, "skill_train_per_client": 4}


def _suite_cfg(seed=3, canaries=None, kind_overrides=None):
    return from_dict({"seed": seed, "federation": {"num_clients": 4}, "data": {"suite": SUITE, "canaries": canaries},
                      **(kind_overrides or {})})


# ----------------------------------------------------------------------------- planting


def test_canaries_go_only_to_the_chosen_clients_train_split_and_are_counted():
    clean = build_federated_data(_suite_cfg(), "sft")
    planted = build_federated_data(_suite_cfg(canaries={"clients": [1, 3], "per_client": 2, "repeats": 4}), "sft")
    assert planted.global_test == clean.global_test
    canaries = {(r["messages"][0]["content"], r["messages"][1]["content"])
                for c in planted.clients for r in c.train if r["category"] == "canary"}
    assert len(canaries) == 4 and all(p == "My secret code is" and len(s) == 6 and s.isdigit() for p, s in canaries)
    for c, (a, b) in enumerate(zip(clean.clients, planted.clients)):
        assert b.test == a.test
        if c in (1, 3):
            assert b.train[: len(a.train)] == a.train and len(b.train) == len(a.train) + 2 * 4
            added = b.train[len(a.train):]
            assert all(r["category"] == "canary" for r in added)
            assert all(added.count(r) == 4 for r in added)  # each canary repeated 4 times
        else:
            assert b.train == a.train
    assert [r for r in planted.report["steps"] if r["step"] == "canaries.planted"] == [
        {"client": "client_1", "step": "canaries.planted", "changed": 8},
        {"client": "client_3", "step": "canaries.planted", "changed": 8}]


def test_canaries_are_regenerated_from_the_seed_alone():
    cfg = CanaryConfig(clients=0.5, per_client=2, digits=8)
    first, again = make_canaries(cfg, 10, seed=7), make_canaries(cfg, 10, seed=7)
    assert first == again and len(first) == 2 * 5 and len({k.client for k in first}) == 5
    assert all(len(k.secret) == 8 for k in first)
    assert {k.secret for k in make_canaries(cfg, 10, seed=8)}.isdisjoint({k.secret for k in first})
    # what a run planted is what the evaluation regenerates
    data = build_federated_data(_suite_cfg(seed=5, canaries={"clients": 0.5}), "sft")
    secrets = {r["messages"][1]["content"] for c in data.clients for r in c.train if r["category"] == "canary"}
    assert secrets == {k.secret for k in make_canaries(CanaryConfig(clients=0.5), 4, seed=5)}


def test_canaries_in_a_file_source_leave_the_test_sets_alone(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Question {i}?", "response": f"Answer {i}."}) + "\n"
                            for i in range(40)))
    base = {"seed": 1, "federation": {"num_clients": 3}}
    clean = build_federated_data(from_dict({**base, "data": {"source": str(path)}}), "sft", cache_dir=tmp_path / "c")
    planted = build_federated_data(from_dict({**base, "data": {"source": str(path), "canaries": {"clients": [2]}}}),
                                   "sft", cache_dir=tmp_path / "c")
    assert planted.global_test == clean.global_test and [c.test for c in planted.clients] == [c.test for c in clean.clients]
    assert [len(c.train) for c in planted.clients] == [len(c.train) + 5 * (i == 2) for i, c in enumerate(clean.clients)]
    assert {"client": clean.clients[2].name, "step": "canaries.planted", "changed": 5} in planted.report["steps"]


@pytest.mark.parametrize("canaries,kind,message", [
    ({"clients": [7]}, "sft", "data.canaries.clients: client 7 does not exist"),
    ({"clients": [1]}, "preference", "data.canaries: canaries are SFT records"),
])
def test_bad_canary_settings_are_refused(canaries, kind, message):
    with pytest.raises(ConfigError, match=message):
        build_federated_data(_suite_cfg(canaries=canaries), kind)


def test_a_share_of_clients_must_be_a_share():
    with pytest.raises(ConfigError, match="data.canaries.clients"):
        from_dict({"data": {"canaries": {"clients": 1.5}}})


# ----------------------------------------------------------------------------- exposure


def test_rank_counts_ties_against_the_secret_and_exposure_is_in_bits():
    assert rank_and_exposure(1.0, [2.0, 3.0, 4.0]) == (1, 2.0)  # first of 4: log2(4) bits
    assert rank_and_exposure(5.0, [2.0, 3.0, 4.0]) == (4, 0.0)  # last: nothing exposed
    rank, exposure = rank_and_exposure(3.0, [2.0, 3.0, 4.0, 9.0, 9.0, 9.0, 9.0])  # a tie ranks ahead
    assert rank == 3 and exposure == pytest.approx(math.log2(8) - math.log2(3))
    assert rank_and_exposure(1.0, [1.0] * 7) == (8, 0.0)  # a model indifferent to every secret


def test_candidates_are_distinct_seeded_and_never_the_secret():
    cfg = CanaryConfig(clients=[0], digits=4, candidates=300)
    canary = make_canaries(cfg, 1, seed=2)[0]
    drawn = candidate_secrets(canary, cfg, seed=2)
    assert drawn == candidate_secrets(canary, cfg, seed=2) and len(set(drawn)) == 300
    assert canary.secret not in drawn and all(len(s) == 4 and s.isdigit() for s in drawn)
    small = CanaryConfig(clients=[0], digits=1)  # 10 secrets in all: the other 9 are the candidates
    tiny_canary = make_canaries(small, 1, seed=2)[0]
    assert sorted(candidate_secrets(tiny_canary, small, seed=2) + [tiny_canary.secret]) == list("0123456789")


def _exposure_cfg(tmp_path):
    canaries = {"clients": [0, 1], "per_client": 2, "candidates": 100}
    return load_config(None, tiny_overrides(tmp_path, **{"federation.num_clients": 2,
                                                         "data.canaries": json.dumps(canaries),
                                                         "eval.metrics": '["canary_exposure"]'}))


def test_a_model_trained_on_a_canary_ranks_it_first_an_untrained_one_does_not(tmp_path, tiny):
    cfg = _exposure_cfg(tmp_path)
    ws = build_workspace(cfg, tiny)
    evaluator = Evaluator(cfg, ws, None)
    before = evaluator.evaluate(get_adapter(ws.model))["global"]
    ranks = [d["rank"] for d in before["canary_details"].values()]
    assert before["canaries"] == 4 and len(set(ranks)) > 1 and max(ranks) > 1
    assert before["canary_exposure"] < math.log2(101) and before["canary_extracted"] == 0

    target = make_canaries(cfg.data.canaries, 2, cfg.seed)[3]  # client 1's second canary: memorize it
    tokens = tokenize_sft([target.record()], ws.tokenizer, cfg.data.max_length, cfg.data.system_prompt)
    batch = collate(tokens.input_ids, tokens.labels, ws.tokenizer.pad_token_id)
    ws.model.train()
    opt = torch.optim.Adam(ws.model.parameters(), lr=1e-2)
    for p in ws.model.parameters():
        p.requires_grad_(True)
    for _ in range(30):
        opt.zero_grad()
        (-response_logps(ws.model, batch).sum()).backward()
        opt.step()
    after = evaluator.evaluate(get_adapter(ws.model))["global"]
    trained = after["canary_details"][target.name]
    assert trained["rank"] == 1 and trained["exposure"] == pytest.approx(math.log2(101)) and trained["extracted"]
    assert after["canary_exposure_max"] == pytest.approx(math.log2(101)) and after["canary_extracted"] >= 1


# ----------------------------------------------------------------------------- fedtune eval --canaries


def test_fedtune_eval_canaries_on_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))
    canaries = json.dumps({"clients": [0], "candidates": 100, "digits": 4})
    cfg = load_config(None, tiny_overrides(tmp_path, **{"federation.rounds": 1, "data.canaries": canaries,
                                                         "eval.metrics": '["exact_match", "canary_exposure"]',
                                                         "eval.per_client": "true"}))
    run_experiment(cfg, progress=False)
    run_dir = cfg.run_dir()
    assert "<td>canary_exposure</td>" in (run_dir / "report.html").read_text()  # in the final evaluation's table

    result = evaluate_target(run_dir, None, False, [], canaries=True)["sets"]["global"]
    assert result["canaries"] == 1 and 0 <= result["canary_exposure"] <= math.log2(101)
    assert result["canary_exposure_max"] == result["canary_exposure"] and result["canary_extracted"] in (0, 1)
    assert set(result["canary_details"]["client_0#0"]) == {"exposure", "rank", "log_perplexity", "extracted"}
    assert "exact_match" in result  # the configured metrics stay

    console = Console(record=True, width=200)
    print_eval(console, {"label": "run", "sets": {"global": result}})
    assert "canaries: 1, exposure" in console.export_text()

    plain = load_config(None, tiny_overrides(tmp_path, **{"output.dir": str(tmp_path / "plain")}))
    plain_yaml = tmp_path / "plain.yaml"
    plain_yaml.write_text(json.dumps(plain.model_dump(mode="json")))
    refused = runner.invoke(app, ["eval", str(plain_yaml), "--canaries"])  # the flag reaches evaluate_target
    assert refused.exit_code == 2 and "no data.canaries" in refused.stderr


def test_the_exposure_metric_without_canaries_is_refused_at_load_time():
    from fedtune.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="'eval.metrics': canary_exposure needs data.canaries"):
        load_config(None, ["eval.metrics=[exact_match, canary_exposure]"])
