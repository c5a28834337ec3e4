"""FedGC (docs/synthesis.md): budget allocation and water-filling by hand, and runs whose
clients add generated pairs — from a real chat-completions server on 127.0.0.1 — to their data:
what each guidance puts in the prompt, the generated share in the report, training on the merge."""

from __future__ import annotations

import json

import pytest
from chat_server import ChatServer
from conftest import metrics_rows, run_config

from fedtune.engine.runner import run_experiment
from fedtune.synth.fedgc import allocate, balance_targets


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))


def test_allocation_and_water_filling_by_hand():
    assert allocate([10, 10, 10], 10, "equal") == [4, 3, 3]  # largest remainder, ties to the first
    assert allocate([10, 30], 8, "inverse_size") == [6, 2]  # shares ∝ 1/10 and 1/30
    assert allocate([5, 500], 7, "balance") == [4, 3]  # per client, balance is equal
    # a3 b0 c1: b, b (tie with c, by name), c, b
    assert balance_targets({"a": 3, "b": 0, "c": 1}, 4) == {"b": 3, "c": 1}


def numbered(text: str) -> str:
    """A served generator: a numbered pair, or (for every fifth prompt) something unparseable."""
    numbered.count = getattr(numbered, "count", 0) + 1
    if numbered.count % 5 == 0:
        return "I would rather not."
    return f"### Instruction:\nGenerated question {numbered.count}?\n### Response:\nAnswer {numbered.count}"


@pytest.mark.parametrize("guidance", ["dual", "prompt"])
def test_clients_train_on_private_plus_generated_pairs(tmp_path, loaded, guidance):
    server = ChatServer(numbered)
    try:
        synth = {"method": "fedgc", "budget": 9, "allocation": "equal", "guidance": guidance, "shots": 2,
                 "task": "facts about invented people",
                 "generation": {"backend": "openai", "base_url": server.url, "model": "served", "concurrency": 1}}
        cfg = run_config(tmp_path, "r", synth=synth, **{"federation.rounds": 1})
        run_experiment(cfg, loaded=loaded, progress=False)
    finally:
        server.close()
    assert len(server.requests) == 9  # the budget, 3 per client
    shows_examples = ["Examples:" in r for r in server.requests]
    assert all(shows_examples) if guidance == "dual" else not any(shows_examples)
    report = json.loads((cfg.run_dir() / "data_report.json").read_text())
    rows = [s for s in report["steps"] if s["step"] == "synth.fedgc"]
    assert [r["generated"] for r in rows] == [3, 3, 3]
    kept = sum(r["kept"] for r in rows)
    assert kept == 9 - sum(s["dropped"] for s in report["steps"] if s["step"] == "synth.fedgc.unparseable")
    assert all(0 < r["generated_share"] < 1 for r in rows if r["kept"])
    generated = [json.loads(x) for f in (cfg.run_dir() / "synth").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(generated) == kept and all(p["synth"]["method"] == "fedgc" for p in generated)
    trained = sum(report["clients"][c]["train"] for c in report["clients"])
    assert trained == sum(r["private"] for r in rows) + kept  # merged: private + generated
    assert metrics_rows(cfg)[0]["train"]
