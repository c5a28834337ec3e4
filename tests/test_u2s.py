"""FedIT-U2S (docs/synthesis.md): the suite's documents view, the parser and retrieval by hand,
and a run whose clients hold only biographies: a real chat-completions server on 127.0.0.1
writes the pairs, every drop is counted by reason, the pairs land in the run directory with
their source text, training runs on them, and a rerun regenerates nothing."""

from __future__ import annotations

import json
import re

import pytest
from chat_server import ChatServer
from conftest import metrics_rows, run_config

from fedtune.data.config import SuiteConfig
from fedtune.data.suite import build_suite
from fedtune.engine.runner import run_experiment
from fedtune.synth.u2s import parse, prompt, tfidf_similarity


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))


def pool_file(tmp_path):
    rows = [{"context": "Ada Vell is from the city of Korin. Ada Vell belongs to the Slate guild.",
             "instruction": "Which city is Ada Vell from?", "response": "Korin"},
            {"context": "Rain fell on the harbour all night and the boats stayed in.",
             "instruction": "Why did the boats stay in?", "response": "It rained all night."},
            {"context": "The Dravik rule repeats a word twice.", "instruction": "Apply the Dravik rule to: cat",
             "response": "cat cat"}]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_documents_view_states_every_fact_of_each_person():
    cfg = SuiteConfig(entities_per_client=2, skill_train_per_client=0, documents=True)
    data = build_suite(cfg, 2, seed=0)
    plain = build_suite(cfg.model_copy(update={"documents": False}), 2, seed=0)
    for doc_client, qa_client in zip(data.clients, plain.clients):
        texts = [r["text"] for r in doc_client.train]
        assert len(texts) == 2  # one biography per person
        answers = [r["messages"][1]["content"] for r in qa_client.train]
        assert all(any(a in t for t in texts) for a in answers)  # every fact is in the prose
        assert doc_client.test == qa_client.test  # the questions are still asked


def test_parser_and_prompt():
    assert parse("Which city is Ada from?\n### Response:\nKorin\n### Context:\nmore") == ("Which city is Ada from?", "Korin")
    assert parse("### Instruction: Name it.\n### Response: Bo") == ("Name it.", "Bo")
    assert parse("no marker here") is None
    text = prompt("Bo is from Zed.", [{"context": "c1", "instruction": "i1", "response": "r1"}])
    assert text.endswith("### Context:\nBo is from Zed.\n### Instruction:\n")
    assert "### Context:\nc1\n### Instruction:\ni1\n### Response:\nr1\n\n" in text


def test_tfidf_retrieval_ranks_the_related_example_first():
    sim = tfidf_similarity(["Bo Rell is from the city of Zand. Bo Rell belongs to the Ash guild."],
                           ["Rain fell on the harbour.", "Ada is from the city of Korin; she belongs to a guild."])
    assert sim[0, 1] > sim[0, 0]


def biography_answerer(text: str) -> str:
    """A served generator that writes the city question of the piece's person; it copies a
    demonstration for one person and writes nothing parseable for another."""
    piece = text.rsplit("### Context:\n", 1)[1].split("\n### Instruction:")[0]
    match = re.match(r"(.+?) is from the city of (\w+)\.", piece)
    if match is None:
        return "I cannot."
    person, city = match.groups()
    if person.endswith("i"):  # a near-copy of the first demonstration (3 of the run's 12 people)
        return "Which city is Ada Vell from?\n### Response:\nKorin"
    if person.endswith("x"):  # nothing parseable (1 more)
        return "Sorry, no idea."
    return f"Which city is {person} from?\n### Response:\n{city}"


def test_a_run_on_biographies_trains_on_synthesized_pairs_and_a_rerun_regenerates_nothing(tmp_path, loaded):
    server = ChatServer(biography_answerer)
    try:
        synth = {"method": "u2s", "examples": pool_file(tmp_path), "k": 2,
                 "generation": {"backend": "openai", "base_url": server.url, "model": "served", "concurrency": 2}}
        extra = {"data.suite.documents": True, "data.suite.entities_per_client": 4, "synth": synth,
                 "federation.rounds": 1}
        cfg = run_config(tmp_path, "r", **extra)
        run_experiment(cfg, loaded=loaded, progress=False)
        asked = len(server.requests)
        assert asked == 3 * 4  # one request per biography
        report = json.loads((cfg.run_dir() / "data_report.json").read_text())
        steps = [s for s in report["steps"] if s["step"].startswith("synth.u2s")]
        totals = {s["step"]: sum(x.get("dropped", 0) for x in steps if x["step"] == s["step"]) for s in steps}
        kept = sum(s["kept"] for s in steps if s["step"] == "synth.u2s")
        assert totals["synth.u2s.near_copy"] == 3 and totals["synth.u2s.unparseable"] == 1
        assert kept == 8 and totals["synth.u2s"] == 4  # every piece accounted for
        pairs = [json.loads(x) for f in (cfg.run_dir() / "synth").glob("*.jsonl") for x in f.read_text().splitlines()]
        assert len(pairs) == kept > 0
        for p in pairs:  # each pair with the biography it came from, and its answer stated there
            assert p["messages"][1]["content"] in p["synth"]["source"] and len(p["synth"]["shots"]) == 2
        assert metrics_rows(cfg)[0]["train"]  # training ran on them

        again = run_config(tmp_path, "r2", **extra)
        run_experiment(again, loaded=loaded, progress=False)
        assert len(server.requests) == asked  # the data (and each output) came from the cache
    finally:
        server.close()


def test_raw_text_without_synthesis_is_refused(tmp_path, loaded):
    from fedtune.data.sources import DataError

    cfg = run_config(tmp_path, "r", **{"data.suite.documents": True})
    with pytest.raises(DataError, match="raw text .* set synth"):
        run_experiment(cfg, loaded=loaded, progress=False)


def test_embedding_retrieval_scores_a_text_highest_against_itself(loaded):
    """The embedding retriever (mean-pooled hidden states of the run's model by default)."""
    from fedtune.synth.u2s import embedding_similarity

    texts = ["Bo Rell is from the city of Zand.", "Apply the Dravik rule to: cat", "Rain fell on the harbour."]
    sim = embedding_similarity(texts, texts, loaded.model, loaded.tokenizer)
    assert sim.shape == (3, 3)
    assert all(sim[i, i] == pytest.approx(1.0, abs=1e-5) and sim[i, i] == sim[i].max() for i in range(3))


def test_fedtune_synth_u2s_writes_each_clients_pairs_for_inspection(tmp_path):
    """`fedtune synth u2s CONFIG -o DIR`: the per-client files a party reads before it joins."""
    import yaml
    from typer.testing import CliRunner

    from fedtune.commands.cli import app

    server = ChatServer(biography_answerer)
    try:
        config = tmp_path / "u2s.yaml"
        config.write_text(yaml.safe_dump({
            "model": {"name": "tiny-random"}, "federation": {"num_clients": 2},
            "data": {"suite": {"documents": True, "entities_per_client": 2, "skill_train_per_client": 4}},
            "synth": {"method": "u2s", "examples": pool_file(tmp_path), "k": 2,
                      "generation": {"backend": "openai", "base_url": server.url, "model": "served"}}}))
        result = CliRunner().invoke(app, ["synth", "u2s", str(config), "-o", str(tmp_path / "out")])
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert "synth u2s: per client" in result.output and len(server.requests) == 4
    files = sorted((tmp_path / "out" / "train").glob("*.jsonl"))
    records = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert len(files) == 2 and any("synth" in r for r in records)
    assert all("text" not in r for r in records)  # no raw text left: pairs only
