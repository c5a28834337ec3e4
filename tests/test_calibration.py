"""The calibration figures (ECE, correlations, CONQORD's order-preservation score), the parsing
of verbalized confidences, and the ``calibration`` eval task end to end on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import metrics_rows, run_config
from scipy import stats

from fedtune.eval.calibration import MISSING_CONFIDENCE, figures, parse_verbalized
from fedtune.eval.calibration_metrics import (
    alignment_scores,
    ece,
    order_preservation,
    pearson,
    spearman,
)

# ------------------------------------------------------------------------------ ECE


def test_ece_perfect_and_worst():
    assert ece([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0]) == pytest.approx(0.0)
    assert ece([1.0, 1.0], [0, 0]) == pytest.approx(1.0)
    assert ece([0.0, 0.0], [1, 1]) == pytest.approx(1.0)  # 0 is in the first bin, not dropped
    assert ece([], []) is None


def test_ece_hand_computed():
    # bins (0.2,0.3]: {0.25 wrong, 0.3 right} -> acc .5, conf .275, |.225| x 2/5
    # bin (0.8,0.9]: {0.9 right, 0.85 right} -> acc 1, conf .875, |.125| x 2/5
    # bin (0.9,1]: {1.0 wrong} -> |1| x 1/5
    conf, right = [0.25, 0.3, 0.9, 0.85, 1.0], [0, 1, 1, 1, 0]
    assert ece(conf, right) == pytest.approx(0.4 * 0.225 + 0.4 * 0.125 + 0.2 * 1.0)


def test_ece_bin_edges_are_upper_inclusive():
    # every k/10 belongs to the bin that ends at it, (k-1)/10 < c <= k/10
    for k in range(1, 11):
        edge = k / 10
        # an edge and a value just below it share a bin: a wrong edge item and a right one below
        # give one bin of acc .5 and conf edge - .02 (apart they would give about .52)
        together = ece([edge, edge - 0.04], [0, 1])
        assert together == pytest.approx(abs(0.5 - (2 * edge - 0.04) / 2)), k
        # the value just above it is in the next bin
        if k < 10:
            apart = ece([edge, edge + 0.04], [0, 1])
            assert apart == pytest.approx(0.5 * edge + 0.5 * (1 - edge - 0.04)), k
    # 0 and .1 share the first bin (acc .5, conf .05); apart they would give .5 x 1 + .5 x .1
    assert ece([0.0, 0.1], [1, 0]) == pytest.approx(0.45)


def test_ece_bins_and_range():
    assert ece([0.3, 0.7], [0, 1], bins=1) == pytest.approx(0.0)  # one bin: conf .5, acc .5
    with pytest.raises(ValueError):
        ece([1.2], [1])
    with pytest.raises(ValueError):
        ece([0.5, 0.5], [1])


# ------------------------------------------------------------------------------ correlations


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    conf = rng.random(30)
    right = (rng.random(30) < conf).astype(float)
    r, p = pearson(conf, right)
    ref = stats.pearsonr(conf, right)
    assert (r, p) == pytest.approx((ref[0], ref[1]))
    rho, p = spearman(conf, right)
    ref = stats.spearmanr(conf, right)
    assert (rho, p) == pytest.approx((ref[0], ref[1]))


def test_correlations_aligned_anti_aligned_and_constant():
    conf, right = [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]
    assert pearson(conf, right)[0] > 0.95 and spearman(conf, right)[0] == pytest.approx(np.sqrt(0.8))
    assert spearman([0.1, 0.2, 0.3], [1, 2, 3])[0] == pytest.approx(1.0)
    assert pearson([0.1, 0.2, 0.3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert spearman([0.1, 0.2, 0.3], [30, 2, 1])[0] == pytest.approx(-1.0)
    assert pearson([0.5, 0.5, 0.5], [1, 0, 1]) is None
    assert spearman([0.1, 0.5, 0.9], [1, 1, 1]) is None
    assert pearson([0.3], [1]) is None


# ------------------------------------------------------------------------------ order preservation


def test_alignment_scores_hand_cases():
    # CONQORD's sign form: A_i = sum_j sign(q_i - q_j) (c_i - c_j)
    c, q = [0.9, 0.5, 0.1], [3, 2, 1]
    # A_0 = (.9-.5) + (.9-.1) = 1.2; A_1 = -(.5-.9) + (.5-.1) = .8; A_2 = -(.1-.9) - (.1-.5) = 1.2
    assert alignment_scores(c, q) == pytest.approx([1.2, 0.8, 1.2])
    # the sign, not the size, of the quality gap counts
    assert alignment_scores(c, [300, 2, 1]) == pytest.approx([1.2, 0.8, 1.2])
    # ties in quality contribute nothing
    assert alignment_scores([0.9, 0.1], [1, 1]) == pytest.approx([0.0, 0.0])


def test_order_preservation_hand_cases():
    c, q = [0.9, 0.5, 0.1], [3, 2, 1]
    assert order_preservation(c, q) == pytest.approx((1.2 + 0.8 + 1.2) / 6)  # 6 ordered pairs differ
    assert order_preservation(c, [1, 2, 3]) == pytest.approx(-(1.2 + 0.8 + 1.2) / 6)  # anti-aligned
    assert order_preservation([1.0, 0.0], [1, 0]) == pytest.approx(1.0)  # the maximum
    assert order_preservation([0.0, 1.0], [1, 0]) == pytest.approx(-1.0)
    assert order_preservation([0.7, 0.7, 0.7], [1, 0, 1]) == pytest.approx(0.0)  # no order in confidence
    assert order_preservation([0.2, 0.9], [1, 1]) is None  # no pair differs in quality
    # with 0/1 correctness it is mean confidence right minus mean confidence wrong
    conf, right = [0.9, 0.6, 0.4, 0.3, 0.8], [1, 1, 0, 0, 0]
    assert order_preservation(conf, right) == pytest.approx(0.75 - 0.5)


# ------------------------------------------------------------------------------ parsing


def test_parse_verbalized():
    assert parse_verbalized("Paris.\n\n### Confidence: 0.9.") == ("Paris.", 0.9)
    assert parse_verbalized("### Answer: Paris\n### Confidence: .35") == ("Paris", 0.35)
    assert parse_verbalized("Paris\n\n### Confidence: 7")[1] == 1.0  # clipped
    assert parse_verbalized("Paris\n\n### Confidence: 1.5.")[1] == 1.0
    assert parse_verbalized("Paris, I think.") == ("Paris, I think.", None)
    assert parse_verbalized("Paris\n\n### Confidence: high") == ("Paris", None)
    # the model running on into the next few-shot question is cut there
    assert parse_verbalized("Au\n\n### Question: what?\n\n### Answer: x\n\n### Confidence: 0.9") == ("Au", None)
    assert parse_verbalized("Au\n\n### Confidence: 0.2\n\n### Question: q\n\n### Confidence: 0.9") == ("Au", 0.2)
    # an echoed question: the answer is after the last "### Answer:"
    assert parse_verbalized("### Question: q\n\n### Answer: Rome\n\n### Confidence: 0.4.") == ("Rome", 0.4)


def test_missing_confidence_counts_as_the_evaluation_default():
    assert MISSING_CONFIDENCE == 0.0  # CONQORD's evaluation default, not its training one (1.0)
    out = figures("verbalized", [0.9, MISSING_CONFIDENCE], [True, False])
    assert out["verbalized_mean_confidence"] == pytest.approx(0.45)
    assert out["verbalized_ece"] == pytest.approx(0.5 * 0.1)  # the 0.0 sits in the first bin, right about being wrong
    assert out["verbalized_order_preservation"] == pytest.approx(0.9)
    assert out["verbalized_pearson"] == pytest.approx(1.0) and out["verbalized_accuracy"] == 0.5


# ------------------------------------------------------------------------------ the task


def test_calibration_task_end_to_end(tmp_path, loaded):
    from fedtune.engine.runner import run_experiment

    qa = tmp_path / "qa.jsonl"
    rows = [{"question": "What is the capital of France?", "answer": "Paris"},
            {"question": "How many legs does a spider have?", "answer": "8"},
            {"question": "What colour is the sky on a clear day?", "answer": "blue"}]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"type": "calibration", "name": "calib", "path": str(qa),
            "generation": {"backend": "local", "max_new_tokens": 6, "cache": False}}
    cfg = run_config(tmp_path, "run", **{"federation.rounds": 1, "eval.tasks": [task]})
    run_experiment(cfg, loaded=loaded, progress=False)
    got = metrics_rows(cfg)[-1]["eval"]["tasks"]["calib"]
    kinds = ("accuracy", "mean_confidence", "ece", "pearson", "pearson_p", "spearman", "spearman_p",
             "order_preservation")
    assert set(got) - {"seconds"} == {f"{k}_{f}" for k in ("verbalized", "token") for f in kinds} | \
        {"confidence_missing", "token_unscored", "n"}
    assert got["n"] == 3 and 0 <= got["confidence_missing"] <= 3 and 0 <= got["token_unscored"] <= 3
    for kind in ("verbalized", "token"):
        for f in ("accuracy", "mean_confidence", "ece"):
            v = got[f"{kind}_{f}"]
            assert v is None or 0.0 <= v <= 1.0, (kind, f, v)
        for f in ("pearson", "spearman", "order_preservation"):
            v = got[f"{kind}_{f}"]
            assert v is None or -1.0 - 1e-9 <= v <= 1.0 + 1e-9, (kind, f, v)
    assert got["token_unscored"] < 3 and got["token_mean_confidence"] > 0  # the tiny model says something
    items_file = cfg.run_dir() / "eval" / "calib" / "round_0.jsonl"  # the last round's evaluation, by its number
    items = [json.loads(line) for line in items_file.read_text().splitlines()]
    assert len(items) == 3 and [i["reference"] for i in items] == ["Paris", "8", "blue"]
    for i in items:
        assert {"prompt", "answer", "correct", "token_confidence", "verbalized_output", "verbalized_confidence",
                "verbalized_correct", "confidence_missing"} <= set(i)
        assert i["token_confidence"] is None or 0.0 < i["token_confidence"] <= 1.0
        assert i["confidence_missing"] == (i["verbalized_confidence"] is None)
    assert sum(i["confidence_missing"] for i in items) == got["confidence_missing"]


def test_token_confidence_is_the_geometric_mean_of_the_answer_tokens(tiny):
    import contextlib
    import math
    from types import SimpleNamespace

    import torch

    from fedtune.eval.calibration import CalibrationTask
    from fedtune.eval.tasks import TASKS

    model, tok = tiny.model, tiny.tokenizer
    evaluator = SimpleNamespace(ws=SimpleNamespace(model=model, tokenizer=tok), pad_id=tok.pad_token_id,
                                precision=SimpleNamespace(autocast=contextlib.nullcontext))
    task = CalibrationTask(TASKS["calibration"].params(type="calibration", path="qa.jsonl", batch_size=2))
    convs = [[{"role": "user", "content": "What is 2+2, please?"}], [{"role": "user", "content": "Hi?"}],
             [{"role": "user", "content": "And now?"}]]
    answers = ["Four, I think.", "", "4"]
    got = task.token_confidences(evaluator, convs, answers)
    assert got[1] is None  # an empty answer has no tokens to score
    model.eval()
    for conv, answer, conf in zip(convs, answers, got):
        if not answer:
            continue
        prompt = tok(tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
        ids = tok(answer, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt + ids])).logits[0].float(), -1)
        token_logps = [logp[len(prompt) + k - 1, t].item() for k, t in enumerate(ids)]
        assert conf == pytest.approx(math.exp(sum(token_logps) / len(token_logps)), rel=1e-4)


def test_task_config_errors(tmp_path):
    from fedtune.eval.calibration import CalibrationTask
    from fedtune.eval.tasks import TASKS
    from fedtune.schema import ConfigError

    params = TASKS["calibration"].params
    with pytest.raises(ConfigError, match="run's own model"):
        CalibrationTask(params(type="calibration", path="qa.jsonl", generation={"backend": "local", "model": "x"}))
    bad = tmp_path / "prompt.txt"
    bad.write_text("Answer with a confidence.")
    with pytest.raises(ConfigError, match="placeholder"):
        CalibrationTask(params(type="calibration", path="qa.jsonl", confidence_prompt=str(bad)))
    with pytest.raises(ConfigError, match="does not exist"):
        CalibrationTask(params(type="calibration", path="qa.jsonl", confidence_prompt=str(tmp_path / "none.txt")))


def test_task_figures_on_canned_answers(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from fedtune.eval.calibration import CalibrationTask
    from fedtune.eval.tasks import TASKS, ItemLog

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"q": q, "a": a}) + "\n" for q, a in [("capital?", "Paris"), ("legs?", "8"),
                                                                              ("sky?", "blue")]))
    plain = {"capital?": "Paris", "legs?": "7", "sky?": "blue sky"}
    stated = {"capital?": "Paris\n\n### Confidence: 0.9.", "legs?": "### Answer: 8\n\n### Confidence: 1.4",
              "sky?": "I do not know."}

    def generate(conversations):
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            question = text.rsplit("### Question: ", 1)[-1].strip()
            out.append(stated[question] if "### Confidence" in text else plain[question])
        return out

    evaluator = SimpleNamespace(generator=lambda params: SimpleNamespace(generate=generate),
                                conversation=lambda q: [{"role": "user", "content": q}])
    task = CalibrationTask(TASKS["calibration"].params(type="calibration", path=str(qa), question_field="q",
                                                       template="{q}", answer_field="a"))
    monkeypatch.setattr(task, "token_confidences", lambda ev, convs, answers: [0.8, 0.3, None])
    got = task.run(evaluator, ItemLog(tmp_path / "items.jsonl"))
    # verbalized: confidences .9 (right), 1.4 -> 1.0 (right), missing -> 0.0 (wrong)
    assert got["verbalized_accuracy"] == pytest.approx(2 / 3)
    assert got["verbalized_mean_confidence"] == pytest.approx(1.9 / 3)
    assert got["verbalized_ece"] == pytest.approx(0.1 / 3)
    assert got["verbalized_order_preservation"] == pytest.approx(0.95)
    assert got["verbalized_pearson"] == pytest.approx(stats.pearsonr([0.9, 1.0, 0.0], [1, 1, 0])[0])
    # token: .8 (Paris, right), .3 ("7", wrong); "blue sky" left out (no token confidence)
    assert got["token_accuracy"] == 0.5 and got["token_mean_confidence"] == pytest.approx(0.55)
    assert got["token_ece"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.3)
    assert got["token_order_preservation"] == pytest.approx(0.5)
    assert got["token_pearson"] == pytest.approx(1.0)
    assert (got["confidence_missing"], got["token_unscored"], got["n"]) == (1, 1, 3)
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert [i["verbalized_confidence"] for i in items] == [0.9, 1.0, None]
    assert [i["verbalized_answer"] for i in items] == ["Paris", "8", "I do not know."]
    assert [i["correct"] for i in items] == [True, False, False]
    assert [i["verbalized_correct"] for i in items] == [True, True, False]
