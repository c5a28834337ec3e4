"""Lifelong task streams (``data.schedule``): which examples each round may use (hand cases),
forgetting from per-client evaluations (a hand case), and a real decentralized run on the tiny
model whose stream, report and exact resume are checked."""

from __future__ import annotations

import fnmatch

import pytest
import torch
from conftest import interrupt_in_round, metrics_rows, run_config

from fedtune import adapter_state as ops
from fedtune.config import ConfigError
from fedtune.data.task_stream import TaskStreamConfig, task_stream
from fedtune.eval.forgetting import stream_report, task_scores


def records(*categories: str) -> list[dict]:
    return [{"category": c} for c in categories]


def test_pool_follows_the_stream_with_a_balanced_bounded_buffer():
    cfg = TaskStreamConfig(tasks=["a", "b", "c*"], rounds_per_task=2, replay=2)
    stream = task_stream(cfg, 0, records("a", "a", "a", "b", "b", "b", "c1", "c2"), dropped=[], seed=7)
    assert stream.order_names == ["a", "b", "c*"]
    assert stream.pool(0) == stream.pool(1) == [0, 1, 2]  # task a alone, no memory yet
    now, memory = stream.pool(2)[:3], stream.pool(2)[3:]
    assert now == [3, 4, 5] and len(memory) == 2 and set(memory) <= {0, 1, 2}  # b + 2 records of a
    late = stream.pool(4)[2:]
    assert stream.pool(4)[:2] == [6, 7] and len(late) == 2
    assert len(set(late) & {0, 1, 2}) == 1 and len(set(late) & {3, 4, 5}) == 1  # one of each past task
    assert set(late) & {0, 1, 2} <= set(memory)  # kept from the previous buffer, not re-read
    assert stream.pool(99) == stream.pool(4)  # the last task stays until the run ends
    assert task_stream(cfg, 0, records("a", "a", "a", "b", "b", "b", "c1", "c2"), [], 7).pool(4) == stream.pool(4)
    # a record dropped by tokenization is not in the token set: positions shift past it
    assert task_stream(cfg, 0, records("a", "x", "b"), dropped=[1], seed=0).pool(2)[:1] == [1]
    no_memory = task_stream(TaskStreamConfig(rounds_per_task=1), 3, records("b", "a", "b"), [], 0)
    assert no_memory.order_names == ["a", "b"] and no_memory.pool(1) == [0, 2]  # default: categories, sorted


def test_unmatched_record_is_named():
    with pytest.raises(ValueError, match="client 2's training record 1: category 'z' matches no task"):
        task_stream(TaskStreamConfig(tasks=["a"]), 2, records("a", "z"), [], 0)


def test_forgetting_is_best_minus_final_of_finished_tasks():
    """Hand case: task a peaks at 0.8 (round 1) and ends at 0.5 → forgetting 0.3; b is current."""
    assert task_scores({"rule:x": 1.0, "rule:y": 0.5, "fact:c": 0.2}, ["rule:*", "fact:*"]) == {
        "rule:*": 0.75, "fact:*": 0.2}

    def row(r, a, b):
        return {"round": r, "eval": {"clients": {"0": {"by_category": {"a": a, "b": b}}}}}

    rows = [row(0, 0.4, 0.0), row(1, 0.8, 0.1), row(2, 0.6, 0.5), row(3, 0.5, 0.9)]
    out = stream_report(rows, {"0": ["a", "b"]}, rounds_per_task=2)
    a, b = out["clients"]["0"]
    assert a == {"task": "a", "from_round": 0, "best": 0.8, "final": 0.5, "forgetting": pytest.approx(0.3)}
    assert b == {"task": "b", "from_round": 2, "best": 0.9, "final": 0.9}
    assert out["mean_forgetting"] == pytest.approx(0.3) and out["mean_final_on_past_tasks"] == 0.5


def test_schedule_refusals(tmp_path):
    with pytest.raises(ConfigError, match="data.schedule.*eval.per_client"):
        run_config(tmp_path, "x", **{"data.schedule": {"rounds_per_task": 1}})
    with pytest.raises(ConfigError, match="data.schedule.*quality"):
        run_config(tmp_path, "x", **{"data.schedule": {}, "eval.per_client": True, "quality": {"score": "ira"}})


def test_decentralized_task_stream_reports_forgetting_and_resumes_exactly(tmp_path, loaded):
    """Three tasks, one round each, with a replay buffer, on gossiping clients: the summary and
    the report show each client's tasks with best, final and forgetting, and a run killed in
    round 1 and resumed ends with the same adapters."""
    from fedtune.engine.runner import run_experiment
    from fedtune.engine.workspace import build_workspace
    from fedtune.report.html import write_report

    extra = {"topology.mode": "decentralized", "topology.graph": "complete", "federation.rounds": 3,
             "eval.per_client": True, "data.suite.rules": ["echo", "bracket"], "data.suite.rule_concentration": 5.0,
             "data.schedule": {"tasks": ["rule:echo", "rule:bracket", "fact:*"], "rounds_per_task": 1, "replay": 4}}
    cfg = run_config(tmp_path, "whole", **extra)
    summary = run_experiment(cfg, loaded=loaded, progress=False)
    stream = summary["task_stream"]
    assert stream["replay"] == 4 and set(stream["clients"]) == {"0", "1", "2"}
    for tasks in stream["clients"].values():
        assert [t["task"] for t in tasks] == ["rule:echo", "rule:bracket", "fact:*"][:len(tasks)]
        assert all("forgetting" in t for t in tasks[:-1]) and "forgetting" not in tasks[-1]
        assert [t["from_round"] for t in tasks] == list(range(len(tasks)))
    assert stream["mean_forgetting"] is not None
    # each round trained on its task's records plus the buffer (≤ 4 of the earlier tasks' records)
    data = build_workspace(cfg, loaded).data
    rows = metrics_rows(cfg)
    for c in range(3):
        count = {t: sum(fnmatch.fnmatchcase(r["category"], t) for r in data.clients[c].train)
                 for t in ("rule:echo", "rule:bracket", "fact:*")}
        pools = [row["train"][str(c)]["task_pool"] for row in rows]
        assert pools == [count["rule:echo"], count["rule:bracket"] + min(4, count["rule:echo"]),
                         count["fact:*"] + 4], (c, count)
    page = write_report(cfg.run_dir()).read_text()
    assert "Task stream" in page and 'alt="exact match per task"' in page and "a replay buffer of 4 records" in page

    cut = run_config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    resumed = run_experiment(cut, resume=True, loaded=loaded, progress=False)
    assert resumed["task_stream"] == stream
    for c in range(3):
        name = f"adapters/client_{c}/adapter_model.safetensors"
        a, b = ops.load(cfg.run_dir() / name), ops.load(cut.run_dir() / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
