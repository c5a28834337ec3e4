"""KnowledgeSG (docs/synthesis.md): the authors' extractors and similarity filter by hand, and a
DP run whose server synthesizes from the global adapter, has a professional (a real
chat-completions server on 127.0.0.1) vet and answer, and fine-tunes on the result."""

from __future__ import annotations

import json
import sqlite3

import pytest
from chat_server import ChatServer
from conftest import interrupt_in_round, metrics_rows, run_config
from flower_harness import assert_adapters_close
from safetensors.torch import load_file

from fedtune.config import ConfigError
from fedtune.engine.runner import run_experiment
from fedtune.synth.knowledgesg import (
    near_copy,
    pair_similarity,
    parse_example,
    parse_instruction,
    parse_output,
)


def test_parsing_follows_the_authors_extractors():
    text = "###example:\n\n##instruction: \nName a city. \n##output:\nVell\n\n###example:\n\n##instruction: more"
    assert parse_example(text) == ("Name a city.", "Vell")  # restated marker stripped, next example cut
    assert parse_example("##instruction: a\n##output:\n##instruction: b") is None  # output runs into the next
    assert parse_example("just prose") is None
    assert parse_instruction("##instruction: Say hi.\n###example:\n##instruction: x") == "Say hi."
    assert parse_instruction("prose\n###example:\n##instruction: late") is None  # only the first example counts
    assert parse_output(" Hello there.\n##instruction: next") == "Hello there."


def test_similarity_filter_by_hand():
    assert pair_similarity("red apple", "red apple") == pytest.approx(1.0)
    assert pair_similarity("red apple", "blue sky") == 0.0
    # idf fitted on the pair: shared words weigh 1, "apple" log(3/2)+1; cosine 4 / (2 * sqrt(4 + 1.405²))
    assert pair_similarity("tell me about topic", "tell me about topic apple") == pytest.approx(0.8189, abs=1e-3)
    assert pair_similarity("a", "b") is None  # no token of two characters: unscorable
    demos = [{"instruction": "Tell me about topic apple."}, {"instruction": "Sing a song."}]
    assert near_copy("Tell me about topic.", demos, 0.52)
    assert not near_copy("Name the capital of Zorbia.", demos, 0.52)


def test_examples_are_the_servers_own(tmp_path):
    with pytest.raises(ConfigError, match="synth.examples"):
        run_config(tmp_path, "r", synth={"method": "knowledgesg"}, **{"data.source": str(tmp_path / "d.jsonl")})
    with pytest.raises(ConfigError, match="professional.model"):
        run_config(tmp_path, "r", synth={"method": "knowledgesg", "professional": {"backend": "local"}})


def professional(text: str) -> str:
    """Vetting: yes, except for the question about safety; answering: a doctor's reply."""
    if text.startswith("Is the following"):
        return "No." if "unsafe" in text else "Yes."
    return "Vell is the capital, says the doctor."


def test_server_synthesis_after_dp_training(tmp_path, loaded, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))
    demos = [{"instruction": f"Tell me about topic {w}.", "output": f"It is {w}."}
             for w in ("apple", "river", "stone", "cloud", "lamp", "tiger")]
    (tmp_path / "demos.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos))
    server = ChatServer(professional)

    def config(out: str):
        synth = {"method": "knowledgesg", "n": 4, "prompting": "icl", "examples": str(tmp_path / "demos.jsonl"),
                 "steps": 2, "vet": True, "domain_prompt": "medical",
                 "generation": {"backend": "local", "max_new_tokens": 8, "temperature": 0},
                 "professional": {"backend": "openai", "base_url": server.url, "model": "pro", "concurrency": 1}}
        return run_config(tmp_path, out, synth=synth, **{"federation.rounds": 1, "federation.num_clients": 2,
                                                         "eval.every": 0, "privacy.sample_level": {"noise_multiplier": 0.8}})

    def run(out: str):
        cfg = config(out)
        return cfg, run_experiment(cfg, loaded=loaded, progress=False)

    try:
        # the tiny random model writes nothing parseable: every attempt is dropped and counted
        cfg, summary = run("garbage")
        row = metrics_rows(cfg)[-1]
        assert row["synth"]["dropped"] == {"unparseable": 4} and row["synth"]["kept"] == 0 and "skipped" in row["synth"]
        assert "global" in row["synth"]["eval_before"]  # the DP model alone, scored before the server step
        lines = (cfg.run_dir() / "synth" / "knowledgesg.jsonl").read_text().splitlines()
        assert len(lines) == 4 and not server.requests
        eps = summary["privacy"]["sample_level"]["epsilon_max"]
        assert eps > 0 and summary["synth"]["privacy"]["sample_level"]["epsilon"] == eps
        assert "post-processing" in summary["synth"]["privacy"]["covers"]

        # what a DP model could have written instead, put in the generation cache under the same keys
        # (the rerun's global adapter is the same, so the server step reads these)
        texts = ["##instruction: \nTell me about topic.\n##output:\nxyz",  # a near-copy of every demonstration
                 "##instruction: \nName the capital of Zorbia.\n##output:\nVell",
                 "##instruction: \nName the capital of Zorbia.\n##output:\nVell",  # a duplicate
                 "##instruction: \nIs this an unsafe question?\n##output:\nmaybe"]  # vetoed by the professional
        with sqlite3.connect(tmp_path / "cache" / "generations.sqlite") as db:
            keys = [k for (k,) in db.execute("SELECT key FROM outputs ORDER BY rowid")]
            assert len(keys) == 4
            db.executemany("UPDATE outputs SET text = ? WHERE key = ?", zip(texts, keys))
        cfg, summary = run("synthesized")
        # killed inside the last round (after its clients trained, before the server step): --resume
        # redoes the round, server step included, and ends where the uninterrupted run ended
        requests = len(server.requests)
        resumed = config("resumed")
        interrupt_in_round(resumed, loaded, stop_round=0)
        run_experiment(resumed, resume=True, loaded=loaded, progress=False)
    finally:
        server.close()
    assert len(server.requests) == requests  # the professional's answers came from the cache
    assert_adapters_close(load_file(str(resumed.run_dir() / "adapter" / "adapter_model.safetensors")),
                          load_file(str(cfg.run_dir() / "adapter" / "adapter_model.safetensors")))
    row = metrics_rows(cfg)[-1]["synth"]
    assert row["kept"] == 1 and row["dropped"] == {"near_copy": 1, "duplicate": 1, "vetoed": 1}
    vets = [r for r in server.requests if r.startswith("Is the following")]
    answers = [r for r in server.requests if "ChatDoctor" in r]  # the authors' medical prompt around it
    assert len(vets) == 2 and answers == [
        "If you are a doctor, please answer the medical questions based on the patient's description. "
        "\n\nPatient: Name the capital of Zorbia.\nChatDoctor: "]
    kept = [json.loads(x) for x in (cfg.run_dir() / "synth" / "knowledgesg.jsonl").read_text().splitlines()]
    assert [a["output"] for a in kept if a["kept"]] == ["Vell is the capital, says the doctor."]
    assert [a["dp_output"] for a in kept if a["kept"]] == ["Vell"]
    assert row["loss"] > 0 and summary["synth"]["kept"] == 1
    # the server fine-tuned the DP global adapter: the final one differs from the first run's
    before = load_file(str(tmp_path / "garbage" / "adapter" / "adapter_model.safetensors"))
    after = load_file(str(cfg.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not (before[k] == after[k]).all() for k in before)
