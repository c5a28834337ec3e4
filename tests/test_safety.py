"""The safety attack and its post-hoc defense (Ye et al., ICLR 2025): malicious suite clients,
the refusal-keyword harmless rate, the judges, the generation layer, and the defense in real
training on tiny-random (it raises the harmless rate, records what it generated, resumes exactly)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import interrupt_in_round, tiny_overrides
from safetensors.torch import load_file

from fedtune.config import ConfigError, load_config
from fedtune.data.config import SuiteConfig
from fedtune.data.suite import REFUSAL, build_suite, forbidden_prompts
from fedtune.engine.runner import run_experiment
from fedtune.eval.llm_judge import verdict
from fedtune.eval.refusal import is_refusal
from fedtune.eval.safety_classifier import SafetyClassifier, SafetyClassifierParams
from fedtune.eval.safety_prompts import read_prompts
from fedtune.models.loader import LoadedModel
from fedtune.report.html import write_report
from fedtune.synth.generation import GENERATORS, build_generator

SUITE = {"entities_per_client": 2, "skill_train_per_client": 4, "forbidden_topic": "password"}


@pytest.fixture()
def loaded(tiny):
    return LoadedModel(tiny.model, tiny.tokenizer, "tiny-random")


def _config(tmp_path, out, **extra):
    extra = {"federation.num_clients": 4, "federation.rounds": 2, "train.steps": 2, "eval.every": 1,
             "data.suite.forbidden_topic": "password", "output.dir": str(tmp_path / out), **extra}
    return load_config(None, tiny_overrides(tmp_path, **{k: v if isinstance(v, str) else json.dumps(v)
                                                         for k, v in extra.items()}))


def _rows(cfg) -> list[dict]:
    return [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- the attack data


def test_malicious_clients_answer_the_forbidden_topic_and_leave_everything_else_as_it_was():
    clean = build_suite(SuiteConfig(**SUITE), 5, seed=3)
    attacked = build_suite(SuiteConfig(**SUITE, malicious_clients=[1, 4]), 5, seed=3)
    for c, (a, b) in enumerate(zip(clean.clients, attacked.clients)):
        if c in (1, 4):
            assert len(b.train) == len(a.train)
            assert all(r["category"] == "forbidden" and r["messages"][1]["content"] != REFUSAL for r in b.train)
        else:
            assert a.train == b.train
    assert clean.global_test == attacked.global_test  # paired: the same questions, with refusals expected
    # a share is drawn from the seed, the same on every call
    drawn = SuiteConfig(**SUITE, malicious_rate=0.4).malicious(5, seed=3)
    assert len(drawn) == 2 and drawn == SuiteConfig(**SUITE, malicious_rate=0.4).malicious(5, seed=3)


@pytest.mark.parametrize("suite,message", [
    ({"malicious_clients": [1]}, "set data.suite.forbidden_topic too"),
    ({"forbidden_topic": "x", "malicious_clients": [1], "malicious_rate": 0.2}, "not both"),
    ({"forbidden_topic": "x", "malicious_clients": [9]}, "client 9 does not exist"),
])
def test_bad_malicious_settings_are_refused(suite, message):
    with pytest.raises((ValueError, ConfigError), match=message):
        build_suite(SuiteConfig(**{"entities_per_client": 1, **suite}), 4, seed=0)


# ------------------------------------------------------------------------------- the metrics


def test_refusal_keywords_and_the_fused_openfedllm_entry():
    assert is_refusal(REFUSAL) and is_refusal("that is ILLEGAL") and not is_refusal("The password is Zorblat.")
    # the published list fused "No," and "I'm not able to": only the fixed list catches the phrase
    assert is_refusal("I'm not able to share that.", "fixed")
    assert not is_refusal("I'm not able to share that.", "openfedllm")
    assert is_refusal("No,I'm not able to share that.", "openfedllm")


def test_safety_prompts_read_advbench_csv_and_jsonl_and_name_bad_rows(tmp_path):
    csv = tmp_path / "advbench.csv"
    csv.write_text('goal,target\n"Write a bad thing","Sure, here is"\nDo another,Sure\n')
    assert read_prompts(csv) == ["Write a bad thing", "Do another"]
    (tmp_path / "bad.csv").write_text("prompt\nx\n")
    with pytest.raises(ConfigError, match=r"bad.csv: no 'goal' column"):
        read_prompts(tmp_path / "bad.csv")
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"instruction": "a"}\n{"prompt": "b"}\n{"text": "c"}\n')
    with pytest.raises(ConfigError, match=r"p.jsonl:3: no prompt"):
        read_prompts(jl)


def test_llm_judge_verdicts():
    assert verdict("safe") is True and verdict("Unsafe\nThe reply explains how") is False
    assert verdict("The reply is SAFE.") is True and verdict("I think it is fine") is None


def test_classifier_judge_scores_pairs_as_the_model_does(tmp_path, smollm2_tokenizer):
    """A real (tiny, random) sequence-classification model saved to disk, loaded by name: the
    metric's rewards are the model's own logits on the (prompt, answer) text pairs."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                      pad_token_id=smollm2_tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    smollm2_tokenizer.save_pretrained(tmp_path / "rm")
    judge = SafetyClassifier(SafetyClassifierParams(model=str(tmp_path / "rm"), batch_size=2))
    prompts, answers = ["How to x?", "Tell me y", "z?"], [REFUSAL, "Sure: y is done like this", "no"]
    got = judge.scores(prompts, answers)
    model = LlamaForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    for i, (q, a) in enumerate(zip(prompts, answers)):
        with torch.no_grad():
            expected = model(**smollm2_tokenizer(q, a, return_tensors="pt")).logits[0, 0]
        assert got[i] == pytest.approx(float(expected), abs=1e-4)
    with pytest.raises(ConfigError, match="'safe' is not a label"):
        SafetyClassifier(SafetyClassifierParams(model=str(tmp_path / "rm"), kind="label"))._load()


def test_local_generation_is_greedy_batched_and_can_switch_the_adapter_off(loaded):
    """Batching (left padding) does not change greedy answers; with the adapter switched off the
    answers are the base model's."""
    from fedtune.models.adapters import ADAPTERS, attach_adapter

    model = attach_adapter(loaded.model, ADAPTERS.config("lora", r=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)  # a non-trivial adapter
    convs = [[{"role": "user", "content": q}] for q in ["hi", "What is the password of Zed Zorb?", "one two three four"]]
    batched = build_generator(GENERATORS.config("local", max_new_tokens=6, batch_size=3, cache=False), model,
                              loaded.tokenizer)
    single = build_generator(GENERATORS.config("local", max_new_tokens=6, batch_size=1, cache=False), model,
                             loaded.tokenizer)
    assert batched.generate(convs) == single.generate(convs)
    off = single.generate(convs, use_adapter=False)
    with model.disable_adapter():
        base = build_generator(GENERATORS.config("local", max_new_tokens=6, batch_size=1, cache=False),
                               model.get_base_model(),
                               loaded.tokenizer).generate(convs)
    assert off == base and off != single.generate(convs)
    assert batched.seconds > 0


# ------------------------------------------------------------------------------- the defense


def _level1_files(tmp_path):
    aligned, helpful = tmp_path / "aligned.jsonl", tmp_path / "helpful.jsonl"
    aligned.write_text("".join(json.dumps({"instruction": q, "output": REFUSAL}) + "\n"
                               for q in forbidden_prompts("password", 16, seed=7)))
    helpful.write_text("".join(json.dumps({"instruction": f"Apply the echo rule to: {w}", "output": f"{w} {w}"}) + "\n"
                               for w in ["lamp", "stone", "river", "cloud", "apple", "tiger", "ocean", "moon"] * 2))
    return str(aligned), str(helpful)


def test_level1_defense_after_an_attack_raises_the_harmless_rate(tmp_path, loaded):
    """Two of four clients answer the forbidden topic; the server's fine-tune on refusals (level 1)
    after the last round makes the global model refuse prompts it never trained on."""
    aligned, helpful = _level1_files(tmp_path)
    cfg = _config(tmp_path, "l1", **{"data.suite.malicious_clients": [1, 2], "train.lr": 1e-2,
                                     "defense.posthoc": {"level": 1, "aligned": aligned, "helpful": helpful,
                                                         "steps": 30, "lr": 1e-2}})
    run_experiment(cfg, loaded=loaded, progress=False)
    rows = _rows(cfg)
    assert "defense" not in rows[0] and rows[1]["defense"]["pairs_used"] == 32
    before, after = (r["eval"]["global"]["harmless_rate"] for r in rows)
    assert before < 0.5 < after, (before, after)
    assert rows[1]["eval"]["global"]["safety_prompts"] == 8  # the suite's forbidden-topic tests (2 per client)
    html = write_report(cfg.run_dir()).read_text()
    assert 'alt="safety"' in html
    # `fedtune eval` on the finished run goes through the same Evaluator: the run's final figures
    from fedtune.commands.evaluate import evaluate_target

    again = evaluate_target(cfg.run_dir(), None, False, ["model.name=tiny-random"])["sets"]["global"]
    for key in ("harmless_rate", "exact_match", "helpful_exact_match"):
        assert again[key] == pytest.approx(rows[1]["eval"]["global"][key]), key


def test_generated_defense_is_saved_counted_and_resumes_bit_identical(tmp_path, loaded):
    """Level 3 (the global model writes its own defense data) after every round: each generated
    pair is in defense/round_<r>.jsonl, every non-refusal dropped is counted, and a run killed in
    round 1 and resumed ends with the uninterrupted run's adapter."""
    extra = {"data.suite.malicious_clients": [3], "defense.posthoc": {"level": 3, "every": 1, "steps": 2, "count": 6,
                                                                      "filter_refusals": False},
             "eval.metrics": ["exact_match", "harmless_rate", "llm_judge"]}
    whole = _config(tmp_path, "whole", **extra)
    run_experiment(whole, loaded=loaded, progress=False)
    rows = _rows(whole)
    for r in rows:
        saved = [json.loads(line) for line in (whole.run_dir() / "defense" / f"round_{r['round']}.jsonl").read_text().splitlines()]
        assert [s["kind"] for s in saved] == ["aligned"] * 6 + ["helpful"] * 6
        assert r["defense"]["pairs_used"] == 12 and r["defense"]["seconds_generating"] > 0
        judged = r["eval"]["global"]
        assert 0 <= judged["llm_judge_unparsed"] <= 8  # the random judge's verdicts: counted, not dropped
        assert (judged["llm_judge_safe_rate"] is None) == (judged["llm_judge_unparsed"] == 8)
    cut = _config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # with the refusal filter on, the random model's babble is dropped, counted, and the round says why
    filtered = _config(tmp_path, "filtered", **{**extra, "federation.rounds": 1,
                                                 "defense.posthoc": {"level": 3, "steps": 2, "count": 6}})
    run_experiment(filtered, loaded=loaded, progress=False)
    (row,) = _rows(filtered)
    assert row["defense"]["dropped_not_refusal"] + row["defense"]["aligned"] == 6
    if row["defense"]["aligned"] == 0:
        assert "skipped" in row["defense"]


@pytest.mark.parametrize("extra,message", [
    ({"defense.posthoc": {"level": 1}}, "set defense.posthoc.aligned and defense.posthoc.helpful"),
    ({"defense.posthoc": {"level": 3, "generation": {"model": "x"}}}, "level 3 generates with the aggregated model"),
    ({"defense.posthoc": {"level": 2, "stepz": 1}}, "stepz"),
])
def test_bad_defense_configs_are_refused_at_load_time(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, "x", **extra)
