"""Selective layer fine-tuning: the selection math on hand-built scores (λ = 0 is top-b, a large
λ one common set, the MILP equals brute force), the importance probe against autograd by hand,
per-layer aggregation by hand, and real runs that train and send only the chosen layers and
resume exactly."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import interrupt_in_round, metrics_rows, run_config
from safetensors.torch import load_file
from scipy.stats import truncnorm

from fedtune.algorithms.aggregation import Aggregator
from fedtune.client.gradient_probe import GRADIENT_STATS, probe_config
from fedtune.client.state_store import ClientStateStore
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.config import ConfigError
from fedtune.data.tokenize import TokenizedSet
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.adapters.state import adapter_parameters
from fedtune.protocol import ClientInstruction, ClientUpdate
from fedtune.selective.budgets import budget
from fedtune.selective.config import SelectiveConfig
from fedtune.selective.importance import layer_scores
from fedtune.selective.layers import candidate_layers, keys_of, layer_of
from fedtune.selective.selection import (
    objective,
    optimum,
    static_order,
    strategic,
    top_b,
)

SCORES = np.array([[5.0, 1.0, 3.0, 0.5],
                   [0.2, 4.0, 3.5, 1.0],
                   [1.0, 0.9, 2.0, 6.0]])


def test_layer_keys_and_the_static_baselines():
    keys = ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.12.mlp.up_proj.lora_B.weight",
            "base_model.model.transformer.h.3.attn.c_attn.lora_A.weight",
            "base_model.model.lm_head.lora_A.weight"]
    assert [layer_of(k) for k in keys] == [0, 12, 3, None]
    assert candidate_layers(keys) == [0, 3, 12]
    assert keys_of(keys, [12]) == [keys[1], keys[3]]  # the head is a common layer: always trained
    layers = [0, 1, 2, 3, 4]
    assert static_order("top", layers)[:2] == [4, 3]
    assert static_order("bottom", layers)[:2] == [0, 1]
    assert static_order("both", layers) == [0, 4, 1, 3, 2]


def test_zero_balance_is_each_clients_top_b_and_a_large_one_a_common_set():
    assert strategic(SCORES, [2, 2, 2], 0.0) == [[0, 2], [1, 2], [2, 3]]
    assert optimum(SCORES, [2, 2, 2], 0.0) == [top_b(s, 2) for s in SCORES]
    common = strategic(SCORES, [2, 2, 2], 100.0)
    assert common[0] == common[1] == common[2]
    # the common set is the best one: the two layers with the largest total importance
    assert common[0] == sorted(np.argsort(-SCORES.sum(0))[:2].tolist())
    # a moderate λ trades: the MILP's value is never below top-b's or the common set's
    mid = strategic(SCORES, [2, 2, 2], 0.5)
    assert objective(SCORES, mid, 0.5) >= max(objective(SCORES, top_b_all, 0.5)
                                              for top_b_all in ([[0, 2], [1, 2], [2, 3]], common))


@pytest.mark.parametrize("seed", range(6))
def test_the_milp_is_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    scores, budgets = rng.random((3, 4)), [int(b) for b in rng.integers(1, 4, size=3)]
    balance = float(rng.choice([0.05, 0.3, 1.0]))
    choices = [[list(c) for r in range(b + 1) for c in itertools.combinations(range(4), r)] for b in budgets]
    best = max(objective(scores, list(pick), balance) for pick in itertools.product(*choices))
    solved = optimum(scores, budgets, balance)
    assert all(len(c) <= b for c, b in zip(solved, budgets))
    assert objective(scores, solved, balance) == pytest.approx(best, abs=1e-9)
    assert all(len(c) == b for c, b in zip(strategic(scores, budgets, balance), budgets))  # padded to budget


def test_heterogeneous_budgets_are_the_authors_truncated_normal():
    cfg = SelectiveConfig(layers=1, budgets="heterogeneous", spread=4)
    drawn = [budget(cfg, c, num_layers=30, seed=0) for c in range(400)]
    assert drawn == [budget(cfg, c, num_layers=30, seed=0) for c in range(400)]  # stateless: the same again
    assert min(drawn) == 1 and max(drawn) <= 6
    reference = np.round(truncnorm(a=0, b=5, loc=1, scale=1).rvs(size=20000, random_state=1))
    assert np.mean(drawn) == pytest.approx(reference.mean(), abs=0.12)
    assert budget(SelectiveConfig(layers=3), 0, num_layers=2, seed=0) == 2  # never more than the layers there are
    with pytest.raises(ValueError, match="spread"):
        SelectiveConfig(layers=4, budgets="heterogeneous", spread=1)


def _probe(trainer, tokens, metric, batches=None):
    ins = ClientInstruction(client_id=0, round=0, lr=0.0, steps=0, config=probe_config(batches))
    update = trainer.train(ins, trainer.start, LocalData(0, tokens))
    assert update.adapter == {}
    stats = update.tensors[GRADIENT_STATS]
    return layer_scores(stats, candidate_layers(stats), metric)


def test_the_probe_scores_match_autograd_by_hand(tmp_path, loaded):
    cfg = run_config(tmp_path, "probe", **{"train.batch_size": 2})
    ws = build_workspace(cfg, loaded)
    trainer = LocalTrainer(ws.model, ws.tokenizer, cfg.train, ClientStateStore(tmp_path / "store"))
    trainer.start = {k: v + 0.01 * torch.randn_like(v) for k, v in ws.initial_adapter.items()}  # B ≠ 0: A has gradients
    one = TokenizedSet([ws.train_tokens[0].input_ids[0]], [ws.train_tokens[0].labels[0]])
    twice = TokenizedSet(one.input_ids * 4, one.labels * 4)  # two batches of the same two examples

    # by hand: the gradient g of the example's mean token loss, per layer
    from fedtune.models.adapters.state import set_adapter
    set_adapter(ws.model, trainer.start)
    params = adapter_parameters(ws.model)
    ids, labels = torch.tensor([one.input_ids[0]]), torch.tensor([one.labels[0]])
    logits = ws.model(input_ids=ids).logits[0, :-1].float()
    loss = F.cross_entropy(logits, labels[0, 1:], ignore_index=-100)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    by_layer = {layer: [k for k in params if layer_of(k) == layer] for layer in candidate_layers(params)}
    g_sq = {l: sum(float(grads[k].double().pow(2).sum()) for k in ks) for l, ks in by_layer.items()}
    theta_sq = {l: sum(float(params[k].detach().double().pow(2).sum()) for k in ks) for l, ks in by_layer.items()}

    # the running gradient is not zeroed between batches: ||g||² + ||2g||² = 5 ||g||²
    assert _probe(trainer, twice, "grad_norm") == pytest.approx([5 * g_sq[l] for l in by_layer], rel=1e-4)
    rgn = _probe(trainer, twice, "rgn")
    assert rgn == pytest.approx([5 * g_sq[l] / (2 * theta_sq[l]) for l in by_layer], rel=1e-4)
    snr = _probe(trainer, twice, "snr")
    hand = [sum(float((2 * grads[k]).double().mean()) ** 2 / float((2 * grads[k]).double().std()) for k in ks)
            for ks in by_layer.values()]
    assert snr == pytest.approx(hand, rel=1e-4)
    assert _probe(trainer, twice, "grad_norm", batches=1) == pytest.approx(
        [g_sq[l] for l in by_layer], rel=1e-4)
    assert all(p.grad is None for p in params.values())  # the probe leaves no gradient behind


def test_each_layer_is_averaged_over_the_clients_that_trained_it():
    x = {"m.layers.0.q.lora_A.weight": torch.zeros(2), "m.layers.1.q.lora_A.weight": torch.zeros(2),
         "m.layers.2.q.lora_A.weight": torch.zeros(2)}
    k0, k1, k2 = x

    def update(cid, n, values, trained):
        return ClientUpdate(cid, {k0: torch.full((2,), values[0]), k1: torch.full((2,), values[1]),
                                  k2: torch.zeros(2)}, n, trained=trained)

    updates = [update(0, 10, (1.0, 0.0), [k0]), update(1, 30, (0.0, 2.0), [k1]), update(2, 10, (3.0, 4.0), [k0, k1])]
    delta = Aggregator().reduce(x, updates)
    assert delta[k0].tolist() == pytest.approx([2.0, 2.0])  # (10·1 + 10·3) / 20: client 1 did not train it
    assert delta[k1].tolist() == pytest.approx([2.5, 2.5])  # (30·2 + 10·4) / 40
    assert delta[k2].tolist() == [0.0, 0.0]  # nobody trained it: unchanged
    whole = [ClientUpdate(u.client_id, u.adapter, u.num_examples) for u in updates]
    assert Aggregator().reduce(x, whole)[k0].tolist() == pytest.approx([0.8, 0.8])  # the diluted mean it avoids


def _cfg(tmp_path, out, **extra):
    return run_config(tmp_path, out, **{"federation.rounds": 3, "eval.every": 0, **extra})


def test_strategic_selection_trains_and_sends_only_the_chosen_layers_and_resumes_exactly(tmp_path, loaded):
    extra = {"selective": {"layers": 1, "strategy": "strategic", "balance": 0.5, "every": 2},
             "communication.compress": {"name": "topk", "ratio": 0.5}}
    whole = _cfg(tmp_path, "whole", **extra)
    run_experiment(whole, loaded=loaded, progress=False)
    rows = metrics_rows(whole)
    assert [r["selective"].get("selected", False) for r in rows] == [True, False, True]  # every 2 rounds
    assert rows[1]["selective"]["layers"] == rows[0]["selective"]["layers"]
    for r in rows:
        assert all(len(v) == 1 for v in r["selective"]["layers"].values())
    full = _cfg(tmp_path, "full", **{"communication.compress": extra["communication.compress"]})
    run_experiment(full, loaded=loaded, progress=False)
    full_rows = metrics_rows(full)
    # half the layers: half the upload in a round without a probe (a probe adds its scores and a download)
    assert rows[1]["bytes_up"] == full_rows[1]["bytes_up"] // 2
    assert rows[0]["bytes_down"] == 2 * full_rows[0]["bytes_down"]

    cut = _cfg(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["selective"]["layers"] for r in metrics_rows(cut)] == [r["selective"]["layers"] for r in rows]
    assert 'alt="selected layers"' in (whole.run_dir() / "report.html").read_text()


def test_selecting_all_layers_is_the_plain_run_and_a_frozen_layer_stays_put(tmp_path, loaded):
    base = {"algorithm": "scaffold", "federation.rounds": 1}
    plain = _cfg(tmp_path, "plain", **base)
    every = _cfg(tmp_path, "all", **base, selective={"strategy": "all"})
    top = _cfg(tmp_path, "top", **base, selective={"strategy": "top", "layers": 1})
    for cfg in (plain, every, top):
        run_experiment(cfg, loaded=loaded, progress=False)
    load = lambda cfg: load_file(str(cfg.run_dir() / "adapter" / "adapter_model.safetensors"))  # noqa: E731
    a, b, t = load(plain), load(every), load(top)
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = build_workspace(plain, loaded).initial_adapter
    moved = {layer_of(k) for k in t if not torch.equal(t[k], start[_peft_key(k, start)])}
    assert moved == {1}  # only the top layer trained, SCAFFOLD's correction did not move layer 0


def _peft_key(saved: str, start: dict) -> str:
    """The adapter-state key of a key in the saved PEFT file."""
    return next(k for k in start if k.replace(".default", "") == saved.replace(".default", ""))


def test_selection_with_what_needs_whole_updates_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'selective': simulated attacks"):
        run_config(tmp_path, "x", selective={"layers": 1}, attack={"method": "gaussian", "clients": [0]})
    with pytest.raises(ConfigError, match="client-level DP does not cover"):
        run_config(tmp_path, "x", selective={"layers": 1}, **{"privacy.client_level": {"clip_norm": 1.0,
                                                                                        "noise_multiplier": 1.0}})
    assert json.loads(json.dumps(SelectiveConfig().model_dump()))["strategy"] == "strategic"
