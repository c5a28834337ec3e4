"""From a data config to clients: natural partitions, global/local test splits, empty clients,
the cache, `fedtune data split/inspect`, and real public data through real training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_overrides
from typer.testing import CliRunner

from fedtune.commands.cli import app
from fedtune.config import from_dict, load_config
from fedtune.data import build as build_module
from fedtune.data.build import build_federated_data
from fedtune.data.sources import DataError

REAL = Path(__file__).parent / "fixtures" / "real"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
runner = CliRunner()


def sample(i: int, client: str = "") -> dict:
    return {"instruction": f"Question {i} from {client or 'someone'} about topic {i % 3}?",
            "response": f"Answer number {i}.", "category": f"topic{i % 3}"}


def fed_file(path: Path, sizes: dict[str, int]) -> Path:
    path.write_text(json.dumps({k: [sample(i, k) for i in range(n)] for k, n in sizes.items()}))
    return path


def cfg_for(source, federation=None, **data):
    return from_dict({"seed": 3, "data": {"source": str(source), **data}, "federation": federation or {}})


def test_fedllm_bench_file_is_a_natural_partition(tmp_path):
    path = fed_file(tmp_path / "fed.json", {"u7": 10, "u2": 20, "u5": 10})
    data = build_federated_data(cfg_for(path, global_test=0, test_fraction=0.1), "sft")
    assert [c.name for c in data.clients] == ["u7", "u2", "u5"]
    assert [(len(c.train), len(c.test)) for c in data.clients] == [(9, 1), (18, 2), (9, 1)]
    assert all("from u2" in r["messages"][0]["content"] for r in data.clients[1].train + data.clients[1].test)
    assert data.report["partition"] == "natural"


def test_fewer_clients_than_the_file_keeps_the_first_k_and_counts_the_rest(tmp_path):
    path = fed_file(tmp_path / "fed.json", {"a": 5, "b": 5, "c": 7})
    data = build_federated_data(cfg_for(path, {"num_clients": 2}, global_test=0), "sft")
    assert [c.name for c in data.clients] == ["a", "b"]
    assert {"client": "source", "step": "partition.natural.clients_beyond_2", "dropped": 7} in data.report["steps"]
    with pytest.raises(DataError, match="federation.num_clients: 5, but the data has 3 clients"):
        build_federated_data(cfg_for(path, {"num_clients": 5}), "sft")


def test_every_record_is_accounted_for(tmp_path):
    """train + client test + global test + everything dropped = everything read."""
    rows = [sample(i) for i in range(60)] + [sample(0)] * 5  # 5 exact duplicates of record 0
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = cfg_for(path, {"num_clients": 3}, global_test=0.1, test_fraction=0.2,
                  partition={"method": "pathological", "classes_per_client": 1}, pipeline=[{"op": "exact_dedup"}])
    data = build_federated_data(cfg, "sft")
    kept = sum(len(c.train) + len(c.test) for c in data.clients) + len(data.global_test)
    dropped = sum(r.get("dropped", 0) for r in data.report["steps"])
    assert kept + dropped == len(rows) and len(data.global_test) == round(0.1 * len(rows))
    for c in data.clients:  # pathological with one class: a single topic per client
        assert len({r["category"] for r in c.train + c.test}) == 1


def test_empty_client_is_an_error_or_skipped_with_a_count(tmp_path, caplog):
    path = fed_file(tmp_path / "fed.json", {"a": 4, "b": 4})
    junk = json.loads(path.read_text())
    junk["b"] = [{"instruction": "!!!!", "response": "????"}] * 3
    path.write_text(json.dumps(junk))
    pipeline = [{"op": "alnum_ratio", "min": 0.5}]
    with pytest.raises(DataError, match="client 'b' has no training record .*data.empty_client: skip"):
        build_federated_data(cfg_for(path, global_test=0, pipeline=pipeline), "sft")
    data = build_federated_data(cfg_for(path, global_test=0, pipeline=pipeline, empty_client="skip"), "sft")
    assert [c.name for c in data.clients] == ["a"] and data.clients[0].client_id == 0
    assert {"client": "b", "step": "alnum_ratio", "kept": 0, "dropped": 3} in data.report["steps"]
    assert {"client": "b", "step": "empty_client.skipped", "dropped": 0} in data.report["steps"]
    assert "client 'b' has no training record left; skipped" in caplog.text


def test_second_build_comes_from_the_cache_and_a_changed_file_invalidates_it(tmp_path, monkeypatch):
    path = fed_file(tmp_path / "fed.json", {"a": 6, "b": 6})
    cfg = cfg_for(path, global_test=2, pipeline=[{"op": "near_dedup"}])
    first = build_federated_data(cfg, "sft", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(build_module, "read_source", lambda *a, **k: pytest.fail("source read despite the cache"))
    second = build_federated_data(cfg, "sft", cache_dir=tmp_path / "cache")
    assert second == first
    monkeypatch.undo()
    fed_file(path, {"a": 6, "b": 7})
    third = build_federated_data(cfg, "sft", cache_dir=tmp_path / "cache")
    assert sum(len(c.train) + len(c.test) for c in third.clients) == 11


def test_split_writes_one_file_per_party_and_reads_back_the_same_clients(tmp_path):
    path = fed_file(tmp_path / "fed.json", {"north/east": 5, "south": 6})
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name: tiny-random}}\ndata: {{source: {path}, global_test: 2}}\n")
    result = runner.invoke(app, ["data", "split", str(config), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [c["train"] for c in manifest["clients"]] == ["train/north_east.jsonl", "train/south.jsonl"]
    original = build_federated_data(load_config(config), "sft")
    again = build_federated_data(cfg_for(tmp_path / "out" / "train", global_test=0, test_fraction=0), "sft")
    assert [sorted(map(json.dumps, c.train)) for c in again.clients] == \
        [sorted(map(json.dumps, c.train)) for c in original.clients]


def test_inspect_prints_per_client_table_and_writes_plots(tmp_path):
    path = fed_file(tmp_path / "fed.json", {"a": 8, "b": 8})
    raw = json.loads(path.read_text())
    raw["a"].append(raw["a"][0])  # one exact duplicate left in client a (no dedup op)
    path.write_text(json.dumps(raw))
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name: tiny-random}}\ndata: {{source: {path}, global_test: 0, test_fraction: 0}}\n")
    result = runner.invoke(app, ["data", "inspect", str(config), "-o", str(tmp_path / "plots")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    line_a = next(line for line in result.stdout.splitlines() if "│ a " in line)
    cells = [c.strip() for c in line_a.split("│")[1:-1]]
    assert cells[:5] == ["a", "9", "0", "0", "1"], cells  # client, train, test, dropped, duplicates
    for png in ("categories.png", "token_lengths.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_data_fails_the_cli_with_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "response": "b"}\n{oops}\n')
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name: tiny-random}}\ndata: {{source: {bad}}}\n")
    result = runner.invoke(app, ["run", str(config), "-s", f"output.dir={tmp_path / 'run'}"])
    assert result.exit_code == 2
    assert f"{bad}:2: invalid JSON" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------- real public data


def test_gsm8k_trains_federated_with_every_record_counted(tmp_path):
    from fedtune.engine.runner import run_experiment

    overrides = tiny_overrides(tmp_path, **{"federation.rounds": 1, "data.max_length": 96})
    cfg = load_config(None, overrides + [f"data.source={REAL / 'gsm8k_train_120.jsonl'}", "data.system_prompt=null",
                                         "data.global_test=12"])
    summary = run_experiment(cfg, progress=False)
    report = json.loads((cfg.run_dir() / "data_report.json").read_text())
    n_global = summary["final"]["global"]["n"]
    assert sum(c["train"] + c["test"] for c in report["clients"].values()) + n_global + sum(
        r.get("dropped", 0) for r in report["steps"]) == 120
    truncated = sum(r.get("changed", 0) for r in report["steps"] if r["step"].endswith("truncated"))
    assert truncated > 0  # GSM8K answers are longer than 96 tokens: truncation is counted
    # examples whose answer was cut away entirely are dropped at tokenization, and counted too
    assert any(r["step"] == "tokenize.train" and r["dropped"] > 0 for r in report["steps"])
    rows = [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_loss"] > 0 and 0 < n_global <= 12


def test_hh_rlhf_pairs_train_dpo(tmp_path):
    from fedtune.engine.runner import run_experiment

    overrides = tiny_overrides(tmp_path, **{"federation.rounds": 1, "data.max_length": 192})
    cfg = load_config(None, overrides + [f"data.source={REAL / 'hh_rlhf_harmless_80.jsonl.gz'}",
                                         "train.objective=dpo", "data.invalid_records=skip", "data.global_test=8"])
    run_experiment(cfg, progress=False)
    rows = [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert "reward_accuracy" in json.dumps(rows[-1])


@pytest.mark.skipif(not SHARED.is_dir(), reason="the full public datasets are not next to this checkout")
def test_full_public_datasets_load():
    gsm = build_federated_data(cfg_for(SHARED / "gsm8k" / "train.jsonl", {"num_clients": 10}), "sft")
    assert sum(len(c.train) + len(c.test) for c in gsm.clients) + len(gsm.global_test) == 7473
    hh = build_federated_data(cfg_for(SHARED / "hh-rlhf-harmless" / "test.jsonl.gz", {"num_clients": 10},
                                      invalid_records="skip"), "preference")
    read_drops = sum(r["dropped"] for r in hh.report["steps"] if r["step"].startswith("read."))
    assert sum(len(c.train) + len(c.test) for c in hh.clients) + len(hh.global_test) + read_drops == 2312
    assert 0 < read_drops < 20  # a handful of pairs with an empty answer or differing prompts


def test_chatbotpa_style_federated_preference_file_trains_beta_dpo(tmp_path):
    """FedLLM-Bench Fed-ChatbotPA: {user: [{prompt, chosen, rejected}]} read as natural clients."""
    from fedtune.engine.runner import run_experiment

    users = {f"user{u}": [{"prompt": f"Say the word number {i} of user {u}.", "chosen": f"word{i}",
                           "rejected": f"I refuse to say word {i}."} for i in range(6)] for u in range(3)}
    path = tmp_path / "chatbotpa.json"
    path.write_text(json.dumps(users))
    cfg = load_config(None, tiny_overrides(tmp_path, **{"federation.rounds": 1}) + [
        f"data.source={path}", "train.objective=beta-dpo", "data.global_test=3"])
    summary = run_experiment(cfg, progress=False)
    report = json.loads((cfg.run_dir() / "data_report.json").read_text())
    assert list(report["clients"]) == ["user0", "user1", "user2"]
    row = json.loads((cfg.run_dir() / "metrics.jsonl").read_text().splitlines()[-1])
    for client in row["train"].values():  # β-DPO's per-client metrics: β used, pairs kept of each batch of 4
        assert client["beta_used"] > 0 and client["pairs_kept"] == 3.0
    assert summary["final"]["global"]["n"] == 3
