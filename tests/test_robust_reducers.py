"""Robust reducers against Flower 1.41's strategies (FedMedian, FedTrimmedAvg, Krum, MultiKrum,
Bulyan) on the same client arrays over several rounds, the geometric median against a
brute-force minimizer, and the black-box dynamic rule's draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategy
from flwr.supercore.task_identity import TaskIdentity

from fedtune.algorithms import ALGORITHMS, build_strategy
from fedtune.algorithms.aggregation import (
    REDUCERS,
    AggregationConfig,
    Aggregator,
    order_statistics,
)
from fedtune.algorithms.aggregation.bulyan import closest_to_median_mean
from fedtune.algorithms.aggregation.geometric_median import geometric_median
from fedtune.algorithms.aggregation.krum import krum_scores
from fedtune.protocol import ClientUpdate

KEYS = {"a.lora_A.weight": (3, 5), "a.lora_B.weight": (5, 3), "b.lora_A.weight": (2, 4)}
N = 9
EXAMPLES = [10, 30, 25, 5, 40, 12, 18, 22, 8]


@pytest.fixture(autouse=True)
def _flower_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield


def _states(gen, x):
    """N client adapters around x; two of them far off (outliers a robust rule should resist)."""
    out = []
    for i in range(N):
        scale = 5.0 if i in (3, 7) else 0.1
        out.append({k: v + scale * torch.randn(v.shape, generator=gen) for k, v in x.items()})
    return out


def _flower(strategy, x, states):
    replies = [Message(RecordDict({"arrays": ArrayRecord({k: v.clone() for k, v in s.items()}),
                                   "metrics": MetricRecord({"num-examples": n})}), dst_node_id=1, message_type="train")
               for s, n in zip(states, EXAMPLES)]
    arrays, _ = strategy.aggregate_train(1, replies)
    return {k: torch.from_numpy(np.array(a.numpy())).to(torch.float32) for k, a in arrays.items()}


CASES = [
    ("median", {}, lambda: flwr_strategy.FedMedian()),
    ("trimmed_mean", {"beta": 0.2}, lambda: flwr_strategy.FedTrimmedAvg(beta=0.2)),
    ("krum", {"f": 2}, lambda: flwr_strategy.Krum(num_malicious_nodes=2)),
    ("multi_krum", {"f": 2, "m": 4}, lambda: flwr_strategy.MultiKrum(num_malicious_nodes=2, num_nodes_to_select=4)),
    ("bulyan", {"f": 1}, lambda: flwr_strategy.Bulyan(num_malicious_nodes=1)),
]


@pytest.mark.parametrize("reducer,params,flower", CASES, ids=[c[0] for c in CASES])
def test_reducer_under_fedavg_matches_flower_over_rounds(reducer, params, flower):
    gen = torch.Generator().manual_seed(1)
    x = {k: torch.randn(s, generator=gen) for k, s in KEYS.items()}
    ours = build_strategy(ALGORITHMS.config("fedavg"), N, AggregationConfig(reducer={"name": reducer, **params}))
    theirs = flower()
    for r in range(3):
        states = _states(gen, x)
        expected = _flower(theirs, x, states)
        x = ours.aggregate(r, x, [ClientUpdate(i, s, n) for i, (s, n) in enumerate(zip(states, EXAMPLES))])
        for k in KEYS:
            torch.testing.assert_close(x[k], expected[k], rtol=1e-5, atol=1e-5)
        assert 3 not in ours.round_report()["kept"] or reducer in ("median", "trimmed_mean")


def test_krum_per_tensor_distance_is_federatedscopes():
    """FederatedScope sums per-tensor L2 norms (not squared, not global): check by hand."""
    d = [{"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.0])},
         {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([1.0])},
         {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([2.0])}]
    d = [{k: v.double() for k, v in x.items()} for x in d]
    # n - f - 2 = 1 nearest: 0 -> min(5+1, 0+2) = 2; 1 -> min(6, 5+1) = 6; 2 -> min(2, 6) = 2
    assert krum_scores(d, 0, "per_tensor_l2") == pytest.approx([2.0, 6.0, 2.0])
    assert krum_scores(d, 0, "squared_l2") == pytest.approx([4.0, 26.0, 4.0])


def test_geometric_median_against_brute_force():
    gen = torch.Generator().manual_seed(0)
    pts = [torch.randn(2, generator=gen, dtype=torch.float64) for _ in range(6)] + [torch.tensor([40.0, -30.0]).double()]
    weights = [1 / 7] * 7
    ours, steps = geometric_median([{"p": p} for p in pts], weights, 1000, 1e-12, 1e-15)
    # brute force: a fine grid around the points, then a finer one around the best cell
    best = None
    center, half = torch.zeros(2, dtype=torch.float64), 5.0
    for _ in range(6):
        axis = torch.linspace(-half, half, 201, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2) + center
        cost = sum(w * (grid - p).norm(dim=1) for w, p in zip(weights, pts))
        best = grid[cost.argmin()]
        center, half = best, half / 20
    assert torch.allclose(ours["p"], best, atol=1e-6), (ours["p"], best)
    assert steps > 1
    # the outlier barely moves it: the median of the six inliers' neighbourhood, not the mean
    assert ours["p"].norm() < 3 and torch.stack(pts).mean(0).norm() > 5


def test_norm_bound_clips_each_delta_then_averages():
    x = {"w": torch.zeros(2)}
    ups = [ClientUpdate(0, {"w": torch.tensor([3.0, 4.0])}, 1), ClientUpdate(1, {"w": torch.tensor([0.3, 0.4])}, 1)]
    delta = Aggregator(AggregationConfig(weighting="uniform", reducer={"name": "norm_bound", "tau": 1.0})).reduce(x, ups)
    # [3,4] has norm 5 -> scaled to [0.6, 0.8]; [0.3, 0.4] (norm 0.5) kept; mean = [0.45, 0.6]
    assert delta["w"].tolist() == pytest.approx([0.45, 0.6])


def test_dynamic_draws_per_round_statelessly_and_reports_the_rule():
    cfg = AggregationConfig(reducer={"name": "dynamic", "pool": ["median", {"name": "krum", "f": 1}, "trimmed_mean"],
                                     "f": 2})
    a = Aggregator(cfg, seed=3)
    b = Aggregator(cfg, seed=3)  # a resumed run rebuilds the reducer: same draws, no saved state
    draws = [a.reducer.draw(r) for r in range(30)]
    assert draws == [b.reducer.draw(r) for r in range(30)]
    assert set(draws) == {0, 1, 2}  # every rule of the pool is drawn
    assert [m.params.f for m in a.reducer.members] == [2, 1, 0 + 2]  # f: the member's own, else dynamic's
    assert a.reducer.min_clients() == 2 * 2 + 3
    gen = torch.Generator().manual_seed(0)
    x = {"w": torch.zeros(4)}
    ups = [ClientUpdate(i, {"w": torch.randn(4, generator=gen)}, 1) for i in range(7)]
    for r in range(5):
        a.reduce(x, ups, r)
        assert a.report["rule"] == a.reducer.members[a.reducer.draw(r)].params.name
    other = Aggregator(cfg, seed=4)
    assert [other.reducer.draw(r) for r in range(30)] != draws


def test_too_few_updates_keep_the_global_adapter():
    agg = Aggregator(AggregationConfig(reducer={"name": "bulyan", "f": 1}))
    x = {"w": torch.ones(2)}
    delta = agg.reduce(x, [ClientUpdate(i, {"w": torch.full((2,), float(i))}, 1) for i in range(4)])
    assert delta["w"].tolist() == [0.0, 0.0] and "skipped" in agg.report


def test_every_reducer_is_registered():
    assert set(REDUCERS.names()) >= {"mean", "median", "trimmed_mean", "krum", "multi_krum", "bulyan",
                                     "norm_bound", "geometric_median", "dynamic"}


@pytest.mark.parametrize("n", range(1, 17))
def test_sorting_network_sorts_every_column(n):
    """The comparator network against ``torch.sort`` for every client count up to 16, ties included."""
    gen = torch.Generator().manual_seed(n)
    x = torch.randint(-3, 4, (n, 500), generator=gen).double()
    rows = order_statistics.sort_rows(x)
    assert torch.equal(torch.stack(rows), x.sort(dim=0).values)


def test_coordinate_rules_match_numpy_across_blocks(monkeypatch):
    """Median (even and odd n), trimmed mean and the Bulyan window against numpy, with blocks small
    enough that tensors are packed together and one tensor is larger than a block."""
    monkeypatch.setattr(order_statistics, "BLOCK", 16)
    gen = torch.Generator().manual_seed(5)
    shapes = {"a": (2, 3), "b": (4, 7), "c": (5,), "d": (3, 3)}
    for n in (7, 10):
        deltas = [{k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()} for _ in range(n)]
        arr = {k: np.stack([d[k].numpy() for d in deltas]) for k in shapes}
        median = order_statistics.coordinatewise(deltas, order_statistics.middle)
        trimmed = order_statistics.coordinatewise(deltas, lambda rows: order_statistics.mean_of(rows[2:-2]))
        window = order_statistics.coordinatewise(deltas, lambda rows: closest_to_median_mean(rows, 3))
        for k in shapes:
            np.testing.assert_allclose(median[k].numpy(), np.median(arr[k], axis=0), rtol=1e-12)
            np.testing.assert_allclose(trimmed[k].numpy(), np.sort(arr[k], axis=0)[2:-2].mean(0), rtol=1e-12)
            gap = np.abs(arr[k] - np.median(arr[k], axis=0))
            nearest = np.take_along_axis(arr[k], np.argsort(gap, axis=0)[:3], axis=0).mean(0)
            np.testing.assert_allclose(window[k].numpy(), nearest, rtol=1e-12)
