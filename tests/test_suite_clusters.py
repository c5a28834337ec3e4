"""data.suite.clusters: clients in one cluster share the rules' answers, clusters interfere (same
titles, different same-arity functions), clusters=1 is the unclustered suite, and impossible
cluster counts are refused."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from fedtune.config import from_dict
from fedtune.data.config import SuiteConfig
from fedtune.data.suite import (
    RULES,
    _rule_items,
    arity_group,
    build_suite,
    build_suite_items,
    cluster_rule,
)


def digest(cfg: SuiteConfig, num_clients: int, seed: int, kind: str) -> str:
    d = build_suite(cfg, num_clients, seed, kind)
    text = json.dumps({"clients": [[c.train, c.test] for c in d.clients], "g": d.global_test, "r": d.report},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# sha256 of the suite as built before clusters existed (same configs, same seeds)
FROZEN = [
    ({}, 4, 0, "sft", "3eded9627f19788b5c22a7b8b64d5f463fd52a4fec96e1701d318d468fb4c872"),
    ({"rule_concentration": 0.3, "flip_rate": 0.2, "noise_rate": 0.1}, 4, 2, "preference",
     "0b17dff1ac4fdba8695e1e73e51918fab49c72fa974e975cadfb6acefddf78a8"),
    ({"rules": ["echo", "swap", "last"], "forbidden_topic": "x", "malicious_rate": 0.3}, 6, 3, "sft",
     "1a0714803c799e6cd98d79c3e4e390ccb23715693cfa8b04b97515a8d27bbd3b"),
]


@pytest.mark.parametrize("kw,n,seed,kind,expected", FROZEN)
def test_one_cluster_is_the_unclustered_suite(kw, n, seed, kind, expected):
    assert digest(SuiteConfig(**kw), n, seed, kind) == expected
    assert digest(SuiteConfig(**kw, clusters=1), n, seed, kind) == expected


def test_cluster_of_is_client_mod_clusters():
    cfg = SuiteConfig(clusters=3)
    assert [cfg.cluster_of(c) for c in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert from_dict({"data": {"suite": {"clusters": 2}}}).data.suite.clusters == 2


def test_rotation_stays_in_the_arity_group_and_differs_per_cluster():
    for rule in RULES:
        group = arity_group(rule)
        answers = [cluster_rule(rule, k) for k in range(len(group))]
        assert cluster_rule(rule, 0) == rule
        assert sorted(answers) == sorted(group)  # every cluster a different function of the same arity


def answers_by_prompt(items) -> dict[str, str]:
    return {it.question: it.answer for it in items if it.category.startswith("rule:")}


def test_same_cluster_clients_answer_alike_and_clusters_differ():
    cfg = SuiteConfig(clusters=2, entities_per_client=1, skill_train_per_client=40, test_per_rule=6)
    train, test, titles = build_suite_items(cfg, 4, seed=0)
    assert set(titles) == {"echo", "bracket", "suffix", "swap"}
    # every client holds every title (uniform mixture within a cluster) and each title has one
    # answer function per cluster: the same prompt gets the same answer within a cluster
    per_client = [answers_by_prompt(tr + te) for tr, te in zip(train, test)]
    for c in range(4):
        assert {q.split(" rule")[0] for q in per_client[c]} == {f"Apply the {t}" for t in titles.values()}
    for a, b in [(0, 2), (1, 3)]:
        shared = set(per_client[a]) & set(per_client[b])
        assert shared, "no prompt shared within a cluster"
        assert all(per_client[a][q] == per_client[b][q] for q in shared)
    # across clusters: the same title and words, a different answer
    for rule, title in titles.items():
        words = ["lamp", "river", "stone"][: RULES[rule][0]]
        (a0,) = _rule_items(rule, title, words, 1, random.Random(0), cluster=cfg.cluster_of(0))
        (a1,) = _rule_items(rule, title, words, 1, random.Random(0), cluster=cfg.cluster_of(1))
        assert a0.question == a1.question and a0.answer != a1.answer
    for a, b in [(0, 1), (2, 3), (0, 3)]:
        shared = set(per_client[a]) & set(per_client[b])
        assert all(per_client[a][q] != per_client[b][q] for q in shared)


def test_test_items_use_the_clients_cluster_and_decoys_stay_plausible():
    cfg = SuiteConfig(clusters=3, rules=["echo", "reverse"], entities_per_client=1)
    train, test, titles = build_suite_items(cfg, 6, seed=4)
    by_title = {v: k for k, v in titles.items()}
    for c, (tr, te) in enumerate(zip(train, test)):
        for it in (x for x in tr + te if x.category.startswith("rule:")):
            rule = by_title[it.question.split("Apply the ")[1].split(" rule")[0]]
            assert it.category == f"rule:{rule}"
            words = it.question.split(": ", 1)[1].split()
            assert it.answer == RULES[cluster_rule(rule, cfg.cluster_of(c))][1](words)
            assert it.wrong != it.answer  # another same-arity function's output
            assert it.wrong in {RULES[r][1](words) for r in arity_group(rule)}


def test_dirichlet_mixture_is_shared_within_a_cluster():
    cfg = SuiteConfig(clusters=2, rule_concentration=0.5, skill_train_per_client=30)
    train, _, _ = build_suite_items(cfg, 4, seed=1)

    def rule_counts(items):
        out: dict[str, int] = {}
        for it in items:
            if it.category.startswith("rule:"):
                out[it.category] = out.get(it.category, 0) + 1
        return out

    assert rule_counts(train[0]) == rule_counts(train[2])
    assert rule_counts(train[1]) == rule_counts(train[3])


def test_default_rules_fit_the_cluster_count():
    _, _, titles = build_suite_items(SuiteConfig(clusters=3), 6, seed=0)
    assert all(len(arity_group(r)) >= 3 for r in titles) and len(titles) == 6


@pytest.mark.parametrize("cfg,n,message", [
    (SuiteConfig(clusters=5), 4, r"data\.suite\.clusters: 5 clusters but only 4 clients"),
    (SuiteConfig(clusters=3, rules=["echo", "swap"]), 6, r"data\.suite\.clusters: 3 clusters need 3 different answers to rule 'swap'"),
    (SuiteConfig(clusters=4), 8, r"data\.suite\.clusters: 4 clusters need 4 same-arity rules"),
])
def test_impossible_cluster_counts_are_refused(cfg, n, message):
    with pytest.raises(ValueError, match=message):
        build_suite_items(cfg, n, seed=0)


def test_clusters_must_be_positive():
    with pytest.raises(ValueError):
        SuiteConfig(clusters=0)
