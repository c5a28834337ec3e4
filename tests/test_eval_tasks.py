"""Evaluation tasks on data of their own: the native generation, multiple-choice and perplexity
scores against lm-evaluation-harness on the same model (item by item), answer extraction and
ROUGE-L against their references, and a task inside a training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import metrics_rows, run_config

from fedtune.commands.evaluate import evaluate_target, task_entries
from fedtune.data.sources import DataError
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.eval.answer_extraction import INVALID, extract, matches
from fedtune.eval.evaluator import Evaluator
from fedtune.eval.rouge import rouge_l
from fedtune.schema import ConfigError

GSM8K = str(Path(__file__).parent / "fixtures" / "real" / "gsm8k_test_8.jsonl")  # ../shared/data/gsm8k/test.jsonl, first 8


def evaluator_with(tmp_path, loaded, tasks: list[dict]) -> Evaluator:
    cfg = run_config(tmp_path, "run", **{"eval.tasks": tasks})
    ws = build_workspace(cfg, loaded)
    return Evaluator(cfg, ws, None, items_dir=tmp_path / "items")


def items(tmp_path, label: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "items" / label / "final.jsonl").read_text().splitlines()]


def test_extraction_matches_lm_eval_gsm8k_filters():
    assert extract("so 3 + 4 = 7.\n#### 7", "gsm8k") == "7"
    assert extract("The answer is $1,200.", "last_number") == "$1,200."
    assert extract("no number here", "gsm8k") == INVALID and extract("none", "last_number") == INVALID
    assert extract("Answer: Paris!", "regex", r"Answer: (\w+)") == "Paris"
    assert matches("$1,200.", "1200") and matches("7", "#### 7") and not matches(INVALID, INVALID)


def test_rouge_l_equals_rouge_score_package():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    cases = [("the cat sat on the mat", "the cat lay on a mat"), ("Paris is the capital.", "paris"),
             ("a b c d", "d c b a"), ("", "anything"), ("x-ray, 42 times", "42 X rays")]
    for ref, pred in cases:
        assert rouge_l(ref, pred) == pytest.approx(scorer.score(ref, pred)["rougeL"].fmeasure, abs=1e-12)


def test_generation_native_and_lm_eval_agree_item_by_item_on_gsm8k(tmp_path, loaded):
    """The oracle: GSM8K test items, the same model, fedtune's generation + extraction and
    lm-eval's equivalent local task — same answers, same extraction, same verdicts."""
    common = {"type": "generation", "path": GSM8K, "limit": 6, "extract": "last_number",
              "generation": {"max_new_tokens": 24, "batch_size": 1, "cache": False}}
    ev = evaluator_with(tmp_path, loaded, [{**common, "name": "native"}, {**common, "name": "harness", "engine": "lm_eval"}])
    result = ev.run_tasks(None)
    native, harness = items(tmp_path, "native"), items(tmp_path, "harness")
    assert len(native) == len(harness) == 6
    for a, b in zip(native, harness):
        assert a["answer"] == b["answer"] and a["answer"]  # the same greedy text
        assert a["extracted"] == b["extracted"] and a["correct"] == b["correct"]
    assert native[0]["reference"] == "18"  # Janet's ducks: GSM8K's '#### 18'
    assert {k: v for k, v in result["native"].items() if k != "seconds"} == \
        {k: v for k, v in result["harness"].items() if k != "seconds"}


def test_multiple_choice_native_equals_lm_eval(tmp_path, loaded):
    data = tmp_path / "mc.jsonl"
    rows = [{"question": f"Which colour is item {i}?", "choices": ["red", "green", "a much longer blue"], "answer": i % 3}
            for i in range(4)] + [{"question": "Pick B.", "choices": ["first", "second"], "answer": "B"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = {"type": "multiple_choice", "path": str(data)}
    ev = evaluator_with(tmp_path, loaded, [{**common, "name": "native"}, {**common, "name": "harness", "engine": "lm_eval"}])
    result = ev.run_tasks(None)
    native, harness = items(tmp_path, "native"), items(tmp_path, "harness")
    for a, b in zip(native, harness):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)
        assert (a["pick"], a["pick_norm"]) == (b["pick"], b["pick_norm"])
    assert native[-1]["answer"] == 1  # the letter B
    assert result["native"]["acc"] == result["harness"]["acc"] and result["native"]["n"] == 5
    assert result["native"]["chance"] == pytest.approx((4 / 3 + 1 / 2) / 5)


def test_perplexity_equals_exp_of_mean_token_nll(tmp_path, loaded):
    import torch

    data = tmp_path / "held_out.jsonl"
    texts = ["The federation trains one model without moving data.", "Short text."]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ev = evaluator_with(tmp_path, loaded, [{"type": "perplexity", "path": str(data), "name": "whole"},
                                           {"type": "perplexity", "path": str(data), "name": "windowed", "max_length": 4}])
    both = ev.run_tasks(None)
    out = both["whole"]
    # oracle: the NLL of each whole text after the end-of-text token, computed directly with the model
    tok, model = ev.ws.tokenizer, ev.ws.model
    nll, count = 0.0, 0
    for t in texts:
        ids = [tok.eos_token_id] + tok(t, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
        nll += float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))
        count += len(ids) - 1
    assert out["tokens"] == count
    assert out["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert out["bits_per_byte"] == pytest.approx(nll / sum(len(t.encode()) for t in texts) / math.log(2), rel=1e-4)
    # windows of 4 tokens cover every token exactly once, with less context (a different figure)
    assert both["windowed"]["tokens"] == count and both["windowed"]["perplexity"] != out["perplexity"]


def test_bad_task_data_names_the_item(tmp_path, loaded):
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n" + json.dumps({"prompt": "no question"}) + "\n")
    ev = evaluator_with(tmp_path, loaded, [{"type": "generation", "path": str(data)}])
    with pytest.raises(DataError, match=r"broken.jsonl:2: no field 'question'"):
        ev.run_tasks(None)
    ev = evaluator_with(tmp_path, loaded, [{"type": "generation", "path": str(tmp_path / "missing.jsonl")}])
    with pytest.raises(DataError, match="eval task generation_missing: .*not found"):
        ev.run_tasks(None)


def test_lm_eval_task_file_runs_and_an_uncached_one_is_a_clear_error(tmp_path, loaded):
    """A user's harness YAML over a local file runs on the in-memory model; one whose dataset is
    a hub id nobody cached fails offline with a one-line error naming the task."""
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"q": f"Is {i} even?", "a": i % 2}) + "\n" for i in range(3)))
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"task: mine\ndataset_path: json\ndataset_kwargs: {{data_files: {{test: {data}}}}}\n"
                    "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\n"
                    "doc_to_choice: ['yes', 'no']\ndoc_to_target: a\nmetric_list: [{metric: acc}]\n")
    uncached = tmp_path / "uncached.yaml"
    uncached.write_text(mine.read_text().replace("task: mine", "task: uncached")
                        .replace(f"dataset_path: json\ndataset_kwargs: {{data_files: {{test: {data}}}}}",
                                 "dataset_path: nobody/uncached_dataset_xyz"))
    ev = evaluator_with(tmp_path, loaded, [{"type": "lm_eval", "task": str(mine)}])
    out = ev.run_tasks(None)["lm_eval_mine"]
    assert out["n"] == 3 and 0 <= out["acc,none"] <= 1
    assert len(items(tmp_path, "lm_eval_mine")) == 3
    ev = evaluator_with(tmp_path, loaded, [{"type": "lm_eval", "task": str(uncached)}])
    with pytest.raises(ValueError, match="eval task lm_eval_uncached: lm-eval could not run .*not cached") as e:
        ev.run_tasks(None)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_tasks_run_in_training_on_schedule_with_fairness(tmp_path, loaded):
    """A 2-round run: the suite as a generation task every round (tasks_every 1), per-client
    fairness figures, and the items filed per round."""
    cfg = run_config(tmp_path, "run", **{"eval.per_client": "true", "eval.tasks_every": 1,
                                         "eval.tasks": '[{type: generation, path: suite, extract: none, limit: 4, '
                                                       'generation: {max_new_tokens: 6}}]'})
    run_experiment(cfg, loaded=loaded)
    rows = metrics_rows(cfg)
    for r in rows:
        task = r["eval"]["tasks"]["generation_suite"]
        assert task["n"] == 4 and 0 <= task["accuracy"] <= 1 and 0 <= task["rouge_l"] <= 1
        fair = r["eval"]["fairness"]["exact_match"]
        clients = [c["exact_match"] for c in r["eval"]["clients"].values()]
        assert fair["worst"] == min(clients) and fair["spread"] == pytest.approx(max(clients) - min(clients))
        assert (cfg.run_dir() / "eval" / "generation_suite" / f"round_{r['round']}.jsonl").exists()
    # `fedtune eval RUN --task ...`: the run's adapter on a task named on the command line
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "choices": ["a", "b"], "answer": i % 2}) + "\n"
                            for i in range(4)))
    result = evaluate_target(cfg.run_dir(), None, False, [], tasks=[f"multiple_choice:{data}"])
    assert set(result["tasks"]) == {"multiple_choice_mc"} and result["tasks"]["multiple_choice_mc"]["n"] == 4
    assert result["fairness"]["exact_match"]["worst"] <= result["fairness"]["exact_match"]["mean"]
    assert (cfg.run_dir() / "eval" / "cli" / "multiple_choice_mc" / "final.jsonl").exists()


def test_task_specs_from_the_command_line(tmp_path):
    listed = tmp_path / "tasks.yaml"
    listed.write_text("- {type: perplexity, path: held.jsonl}\n- {type: lm_eval, task: arc_easy}\n")
    assert task_entries(["generation:qa.jsonl", "lm_eval:hellaswag", "{type: generation, path: g.jsonl, extract: gsm8k}",
                         str(listed)]) == [
        {"type": "generation", "path": "qa.jsonl"}, {"type": "lm_eval", "task": "hellaswag"},
        {"type": "generation", "path": "g.jsonl", "extract": "gsm8k"},
        {"type": "perplexity", "path": "held.jsonl"}, {"type": "lm_eval", "task": "arc_easy"}]
    with pytest.raises(ConfigError, match="--task 'gsm8k': give TYPE:PATH"):
        task_entries(["gsm8k"])
