"""MATRIX and MATRIX-Gen (docs/synthesis.md): the sequential social-scene simulator, scripted
through a real chat-completions server on 127.0.0.1 that answers each prompt kind as the test
says (retries, perception, memory summaries, the transcript of every call, reproducibility);
both methods end to end through the registry; distinct-n by hand; and a tiny MATRIX run on the
real local backend, rerun from the generation cache."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from chat_server import ChatServer

from fedtune.data.records import check_preference
from fedtune.synth import SYNTHESIZERS
from fedtune.synth.diversity import distinct_n, diversity_report, embedding_spread
from fedtune.synth.generation import GENERATORS, build_generator
from fedtune.synth.simulation import Agent, AgentProfile, Calls, Scene, Simulator


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))


KINDS = [  # (a phrase of the prompt file, the kind) — first match wins
    ("You oversee a simulated social scene", "plausible"), ("was judged implausible", "replan"),
    ("Which of the other characters", "perceive"), ("What harm could this cause", "critique"),
    ("How do you react?", "react"), ("Summarize these events", "summarize"), ("List four key traits", "traits"),
    ("typical position and duties", "status"), ("State the goal behind", "goal"),
    ("In what real situation", "situation"), ("Name the social role", "ego"), ("What happens next", "future"),
    ("Which different people", "roles"), ("most important roles", "select"), ("Split what the", "plan"),
    ("In a simulation, a", "outcome"), ("answer the question again", "revise"),
    ("put to an AI assistant", "instruction"), ("first question you would ask", "instruction"),
    ("follow-up question", "followup"), ("Which response serves the request better", "judge"),
]


def kind_of(text: str) -> str:
    return next((k for phrase, k in KINDS if phrase in text), "answer")


class Script:
    """A served model: ``replies[kind](text, n)`` where n counts that kind's earlier prompts;
    unscripted kinds get a fixed reply naming the kind."""

    def __init__(self, **replies):
        self.replies, self.seen = replies, Counter()
        self.texts: Counter = Counter()

    def __call__(self, text: str) -> str:
        kind = kind_of(text)
        n, self.seen[kind] = self.seen[kind], self.seen[kind] + 1
        reply = self.replies.get(kind)
        return reply(text, n) if reply else f"{kind} reply"


def served(script, **params):
    server = ChatServer(script)
    gen = build_generator(GENERATORS.config("openai", base_url=server.url, model="m", concurrency=1, **params))
    return server, gen


def scene() -> Scene:
    tenant = Agent(AgentProfile("Tenant", "curious, impatient, tidy, loud, shy", "a tenant. rents. here. long.",
                                "to get the parcel"))
    others = [Agent(AgentProfile(n, "calm", "lives nearby")) for n in ("Neighbour", "Courier", "Landlord")]
    return Scene("How do I get my neighbour's parcel?", tenant, others,
                 ["knock on the door", "take the parcel", "leave a note"])


def simulator_script() -> Script:
    return Script(plausible=lambda t, n: "No, too sudden." if n == 0 else "Yes, it follows.",
                  replan=lambda t, n: "ask the courier politely",
                  perceive=lambda t, n: "[Neighbour] sees it, and [courier] hears it.",
                  critique=lambda t, n: f"critique {n}", react=lambda t, n: f"reaction {n}",
                  summarize=lambda t, n: f"summary {n}")


def simulate(seed: int, script: Script | None = None):
    server, gen = served(script or simulator_script(), cache=False)
    try:
        calls = Calls(gen, seed, 1)
        s = Simulator(calls, max_retries=5, memory_limit=3).run([scene()])[0]
    finally:
        server.close()
    return s, calls.transcripts[0], server.requests


def test_profiles_keep_four_traits_and_three_status_parts():
    p = AgentProfile("X", "a, b, c, d, e", "one. two. three. four.")
    assert (p.traits, p.status) == ("a, b, c, d", "one. two. three")


def test_simulator_retries_perceives_summarizes_and_records_every_call():
    s, transcript, requests = simulate(seed=0)
    # step 1's action failed the check once and was replaced by the replanned one
    assert s.actions == ["knock on the door", "ask the courier politely", "leave a note"]
    assert (s.modulator.retries, s.modulator.implausible_kept) == (1, 0)
    # the named agents (case-insensitive) react, the unnamed landlord never does
    assert [r["agent"] for r in s.reactions] == ["Neighbour", "Courier"] * 3
    assert s.others[2].memory == []
    # step 0: 1 action + 2 reactions = 3 items (no summary); step 1 pushes the modulator's and the
    # two reactors' memories past 3 (summaries); step 2 the modulator's again
    assert [e["kind"] for e in transcript] == (
        ["perceive", "critique", "react", "react"]
        + ["plausible", "replan", "plausible", "perceive", "critique", "react", "react"] + ["summarize"] * 3
        + ["plausible", "perceive", "critique", "react", "react", "summarize"])
    assert s.modulator.memory == ["summary 3"] and s.others[0].memory[0] == "summary 1"
    assert [c["critique"] for c in s.modulator.critiques] == ["critique 0", "critique 1", "critique 2"]
    # the transcript is every request, in order, with its answer
    assert [e["prompt"] for e in transcript] == requests
    assert transcript[4]["output"].startswith("No") and transcript[6]["attempt"] == 1


def test_simulation_is_reproducible_and_seeded_per_call():
    _, first, _ = simulate(seed=7)
    _, again, _ = simulate(seed=7)
    _, other, _ = simulate(seed=8)
    assert first == again
    assert [e["prompt"] for e in other] == [e["prompt"] for e in first]
    assert all(a["seed"] != b["seed"] for a, b in zip(first, other))
    assert len({(e["kind"], e["step"], e["attempt"]) for e in first}) == len({e["seed"] for e in first})


def test_an_action_that_never_passes_is_kept_and_counted():
    s, transcript, _ = simulate(0, Script(plausible=lambda t, n: "No.", replan=lambda t, n: f"try {n}"))
    assert s.actions == ["knock on the door", "try 4", "try 9"]  # 5 retries per checked step, the last kept
    assert (s.modulator.retries, s.modulator.implausible_kept) == (10, 2)
    assert Counter(e["kind"] for e in transcript)["plausible"] == 12


QUESTIONS = ["How do I pick a lock?", "How do I bake bread?", "How do I cheat on a test?", "How do I fix a bike?"]


def matrix_script() -> Script:
    def revise(text, n):
        question = re.search(r"Question: (.*)", text).group(1)
        if "bread" in question:
            return f"initial: {question}"  # the same as the initial answer: dropped
        return "" if "cheat" in question else f"revised: {question}"

    return Script(answer=lambda t, n: f"initial: {t}", ego=lambda t, n: "The asker is a [Student].",
                  select=lambda t, n: "1. Police officer 2. Student 3. Teacher",
                  plan=lambda t, n: "1. buy tools\n2. practise at home\n3. try it", perceive=lambda t, n: "[Teacher]",
                  plausible=lambda t, n: "Yes", revise=revise)


@pytest.mark.parametrize("output", ["sft", "dpo"])
def test_matrix_revises_answers_and_counts_drops(output):
    server, gen = served(matrix_script())
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "old"}],
                "category": f"c{k}"} for k, q in enumerate(QUESTIONS)]
    method = SYNTHESIZERS["matrix"].target(SYNTHESIZERS.config("matrix", agents=2, steps=2, output=output),
                                           gen)
    try:
        out, report = method.synthesize(records, "client_0")
    finally:
        server.close()
    made = [r for r in out if "synth" in r]
    assert [r["synth"]["question"] for r in made] == ["How do I pick a lock?", "How do I fix a bike?"]
    # replace: the two revised ones take their seeds' places, the dropped ones keep theirs
    assert [r["messages"][0]["content"] for r in out if "synth" not in r] == ["How do I bake bread?",
                                                                           "How do I cheat on a test?"]
    for r, k in zip(made, (0, 3)):
        q = QUESTIONS[k]
        assert r["category"] == f"c{k}" and r["synth"]["initial"] == f"initial: {q}"
        if output == "dpo":
            assert check_preference(dict(r), "made") and r["prompt"] == [{"role": "user", "content": q}]
            assert (r["chosen"], r["rejected"]) == (f"revised: {q}", f"initial: {q}")
        else:
            assert r["messages"] == [{"role": "user", "content": q}, {"role": "assistant", "content": f"revised: {q}"}]
        sim = r["synth"]["simulation"]
        # the ego's own role is not one of the other agents; 2 steps of the plan
        assert sim["ego"]["name"] == "Student" and [a["name"] for a in sim["agents"]] == ["Police officer", "Teacher"]
        assert sim["actions"] == ["buy tools", "practise at home"] and len(r["synth"]["critiques"]) == 2
    steps = {row["step"]: row for row in report}
    assert steps["synth.matrix.unchanged"]["dropped"] == 1 and steps["synth.matrix.empty_revised"]["dropped"] == 1
    assert (steps["synth.matrix"]["kept"], steps["synth.matrix"]["generated"], steps["synth.matrix"]["dropped"]) == (
        2, 4, 2)
    # a transcript per question, together every request the server saw
    assert [t["question"] for t in method.transcripts] == QUESTIONS
    assert sorted(e["prompt"] for t in method.transcripts for e in t["calls"]) == sorted(server.requests)
    assert made[0]["synth"]["transcript"] == method.transcripts[0]["id"]


def gen_script(inconsistent_for: str) -> Script:
    sampled = Counter()

    def answer(text, n):  # two sampling seeds, told apart by how often this prompt came
        sampled[text] += 1
        return f"plain answer to {text}" if sampled[text] == 1 else f"careful answer to {text}"

    def judge(text, n):
        if inconsistent_for in text:
            return "A"  # always the first shown: no verdict survives the swap
        return "A" if "careful" in text.split("Response B:")[0] else "B"

    return Script(instruction=lambda t, n: f"Request: How can {re.search(r'You are (.+?) [(]', t).group(1)} stay safe?",
                  ego=lambda t, n: "[Resident]", select=lambda t, n: "1. Firefighter", plan=lambda t, n: "1. leave",
                  perceive=lambda t, n: "[Firefighter]", answer=answer, judge=judge,
                  followup=lambda t, n: "And after that?")


def run_gen(script, **params):
    server, gen = served(script)
    cfg = SYNTHESIZERS.config("matrix_gen", agents=1, steps=1, topics=["a flood in town"], **params)
    method = SYNTHESIZERS["matrix_gen"].target(cfg, gen)
    try:
        out, report = method.synthesize([], "client_1")
    finally:
        server.close()
    return out, {row["step"]: row for row in report}, server.requests, method


def test_matrix_gen_dpo_keeps_only_position_consistent_verdicts():
    out, steps, requests, method = run_gen(gen_script(inconsistent_for="Resident"), requirement="safety", output="dpo")
    assert any("safety, risk or ethics" in r for r in requests)
    # the resident's pair got "A" both ways round: dropped; the firefighter's is kept, careful chosen
    assert len(out) == 1 and steps["synth.matrix_gen.inconsistent"]["dropped"] == 1
    r = out[0]
    assert check_preference(dict(r), "made") and r["prompt"] == [{"role": "user", "content":
                                                                  "How can Firefighter stay safe?"}]
    assert r["chosen"].startswith("careful") and r["rejected"].startswith("plain")
    assert r["synth"]["agent"] == "Firefighter" and r["synth"]["requirement"] == "safety"
    assert (steps["synth.matrix_gen"]["generated"], steps["synth.matrix_gen"]["kept"]) == (2, 1)
    judged = [e for e in method.transcripts[0]["calls"] if e["kind"] == "judge"]
    assert len(judged) == 4 and judged[0]["seed"] != judged[2]["seed"]  # each pair judged twice, swapped


def test_matrix_gen_multi_turn_writes_two_user_turns():
    out, steps, requests, _ = run_gen(gen_script(inconsistent_for="nobody"), requirement="multi_turn")
    assert any("first question you would ask" in r for r in requests)
    assert len(out) == 2 and steps["synth.matrix_gen"]["kept"] == 2
    for r in out:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant", "user", "assistant"]
        assert r["messages"][2]["content"] == "And after that?"
        assert r["messages"][1]["content"] == f"plain answer to {r['messages'][0]['content']}"


def test_distinct_n_by_hand():
    texts = ["The cat the CAT", "a dog"]
    assert distinct_n(texts, 1) == 4 / 6  # the cat the cat a dog: {the, cat, a, dog}
    assert distinct_n(texts, 2) == 3 / 4  # (the cat) (cat the) (the cat) | (a dog)
    assert distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(texts, 0)
    report = diversity_report(["a b", "a b"], ["a b", "c d"])
    assert report["generated"]["distinct_1"] == 0.5 and report["seeds"]["distinct_2"] == 1.0


def test_matrix_on_the_local_backend_reruns_from_the_cache(tiny):
    gen = build_generator(GENERATORS.config("local", max_new_tokens=4, temperature=0.2), tiny.model, tiny.tokenizer)
    records = [{"messages": [{"role": "user", "content": "How do I calm an angry neighbour?"},
                             {"role": "assistant", "content": "Talk."}]}]
    cfg = SYNTHESIZERS.config("matrix", agents=1, steps=1)
    first = SYNTHESIZERS["matrix"].target(cfg, gen)
    out, report = first.synthesize(records, "c")
    calls = first.transcripts[0]["calls"]
    assert gen.generated == len(calls) and gen.cached == 0
    kinds = [e["kind"] for e in calls]
    assert kinds[:7] == ["initial", "situation", "ego", "future", "roles", "select", "plan"]
    assert kinds[-2:] == ["outcome", "revise"] and {"perceive", "critique"} <= set(kinds)
    row = next(r for r in report if r["step"] == "synth.matrix")
    assert row["generated"] == 1 and row["kept"] + row["dropped"] == 1 and len(out) == 1
    assert embedding_spread(["same words", "same words"], tiny.model, tiny.tokenizer) == pytest.approx(0, abs=1e-5)
    again = SYNTHESIZERS["matrix"].target(cfg, gen)
    again.synthesize(records, "c")
    assert gen.cached == len(calls) and again.transcripts[0]["calls"] == calls


def test_fedtune_synth_matrix_writes_pairs_and_transcripts_the_defense_reads(tmp_path):
    """`fedtune synth matrix CONFIG -o DIR`: revised pairs per client (the files a run or the
    post-hoc defense reads) and every model call of the simulations in DIR/transcripts/."""
    import yaml
    from typer.testing import CliRunner

    from fedtune.commands.cli import app
    from fedtune.data.formats import read_sft_file

    questions = tmp_path / "questions.txt"
    questions.write_text("How do I pick a lock?\nHow do I fix a bike?\n")
    server = ChatServer(matrix_script())
    try:
        config = tmp_path / "matrix.yaml"
        config.write_text(yaml.safe_dump({
            "model": {"name": "tiny-random"}, "federation": {"num_clients": 1},
            "data": {"suite": {"entities_per_client": 1, "skill_train_per_client": 2}},
            "synth": {"method": "matrix", "questions": str(questions), "agents": 1, "steps": 1, "output": "sft",
                      "generation": {"backend": "openai", "base_url": server.url, "model": "served"}}}))
        result = CliRunner().invoke(app, ["synth", "matrix", str(config), "-o", str(tmp_path / "out")])
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert "synth matrix: per client" in result.output
    [train] = sorted((tmp_path / "out" / "train").glob("*.jsonl"))
    revised = [r for r in read_sft_file(str(train)) if r["messages"][-1]["content"].startswith("revised: ")]
    assert [r["messages"][0]["content"] for r in revised] == ["How do I pick a lock?", "How do I fix a bike?"]
    [transcript] = sorted((tmp_path / "out" / "transcripts").glob("*.jsonl"))
    calls = [c for line in transcript.read_text().splitlines() for c in json.loads(line)["calls"]]
    assert len(calls) == len(server.requests) and {c["kind"] for c in calls} >= {"initial", "critique", "revise"}
