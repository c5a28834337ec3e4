"""Decentralized gossip: the graphs' math on small tensors (the learned row against a brute-force
solve of pFedGraph's QP), and a real gossip run on the tiny model, resumed mid-run."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import interrupt_in_round, metrics_rows, run_config

from fedtune import adapter_state as ops
from fedtune.config import ConfigError
from fedtune.decentralized import graphs
from fedtune.decentralized.learned_graph import (
    dissimilarity,
    learned_rows,
    project_to_simplex,
)


def test_simplex_projection_is_the_closest_simplex_point():
    """Against a grid search over the 3-simplex: no grid point is closer to v than the projection."""
    torch.manual_seed(0)
    grid = torch.tensor([(a / 50, b / 50, 1 - a / 50 - b / 50) for a, b in itertools.product(range(51), repeat=2)
                         if a + b <= 50], dtype=torch.float64)
    for _ in range(20):
        v = torch.randn(3, dtype=torch.float64) * 2
        x = project_to_simplex(v)
        assert x.min() >= 0 and abs(float(x.sum()) - 1) < 1e-12
        assert float((x - v).norm()) <= float((grid - v).norm(dim=1).min()) + 1e-12


def test_learned_row_solves_pfedgraphs_qp():
    """Row i minimises Σ_j x_j d_ij + α‖x − p‖² over the simplex (checked on a fine grid)."""
    deltas = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.2]], dtype=torch.float64)
    sizes, alpha = [10, 20, 30], 0.8
    rows = learned_rows(deltas, sizes, alpha)
    p = torch.tensor(sizes, dtype=torch.float64) / 60
    d = dissimilarity(deltas)
    grid = torch.tensor([(a / 200, b / 200, 1 - a / 200 - b / 200) for a, b in itertools.product(range(201), repeat=2)
                         if a + b <= 200], dtype=torch.float64)
    for i in range(3):
        objective = lambda x: (x * d[i]).sum(-1) + alpha * ((x - p) ** 2).sum(-1)  # noqa: E731
        assert float(objective(rows[i])) <= float(objective(grid).min()) + 1e-9
    assert d[0, 0] == -1 and d[0, 2] > 0.9  # self: −1 (clamped); opposite update: dissimilar


def test_learned_graph_recovers_clusters():
    """Two groups of clients moving in two directions: each row's weight stays inside its group."""
    torch.manual_seed(1)
    a, b = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    deltas = torch.stack([a + 0.3 * torch.randn(64, dtype=torch.float64) for _ in range(3)]
                         + [b + 0.3 * torch.randn(64, dtype=torch.float64) for _ in range(3)])
    rows = learned_rows(deltas, [1] * 6, alpha=0.8)
    within = sum(float(rows[i, (i // 3) * 3:(i // 3) * 3 + 3].sum()) for i in range(6)) / 6
    assert within > 0.95 and torch.allclose(rows.sum(1), torch.ones(6, dtype=torch.float64))


def test_node_row_from_round_updates_or_from_the_common_start():
    """A node's learned row is pFedGraph's row over the members' updates: since the common start,
    or (delta_from: round) since each member's own adapter at the round's start."""
    from fedtune.decentralized.gossip import MixJob, node_row

    torch.manual_seed(2)
    common = {"w": torch.zeros(4)}
    starts = [{"w": torch.randn(4)} for _ in range(3)]
    trained = [{"w": s["w"] + torch.randn(4)} for s in starts]
    job = MixJob(1, [0, 1, 2], trained, [1, 2, 3], "learned", 0.8, start=common)
    cumulative = torch.stack([t["w"].double() for t in trained])
    assert node_row(job) == learned_rows(cumulative, [1, 2, 3], 0.8)[1].tolist()
    job.starts = starts
    this_round = torch.stack([(t["w"] - s["w"]).double() for t, s in zip(trained, starts)])
    assert node_row(job) == learned_rows(this_round, [1, 2, 3], 0.8)[1].tolist() != learned_rows(cumulative, [1, 2, 3], 0.8)[1].tolist()


def test_fixed_graphs():
    assert graphs.ring(4) == [[1, 3], [0, 2], [1, 3], [0, 2]]
    from fedtune.decentralized.config import TopologyConfig
    from fedtune.decentralized.gossip import Gossip
    from fedtune.protocol import ClientUpdate

    ring = Gossip(TopologyConfig(mode="decentralized", graph="ring"), 4)
    updates = [ClientUpdate(c, {"w": torch.full((2,), float(c))}, 1) for c in range(4)]
    mixed = ring.mix(0, {"w": torch.zeros(2)}, updates)
    w = torch.tensor(ring.round_report()["graph"]["weights"], dtype=torch.float64)
    assert torch.allclose(w[0], torch.tensor([1 / 3, 1 / 3, 0, 1 / 3], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(mixed[0]["w"], torch.full((2,), 4 / 3))  # (0 + 1 + 3) / 3
    assert graphs.random_neighbours(5, 2, seed=3, round=1) == graphs.random_neighbours(5, 2, seed=3, round=1)
    assert all(len(n) == 2 and i not in n for i, n in enumerate(graphs.random_neighbours(5, 2, 3, 1)))
    with pytest.raises(ValueError, match="random\\(5\\)"):
        graphs.random_neighbours(5, 5, 0, 0)


def test_decentralized_refuses_server_parts(tmp_path):
    with pytest.raises(ConfigError, match="topology.*algorithm.name needs one"):
        run_config(tmp_path, "x", **{"topology.mode": "decentralized", "algorithm.name": "fedprox"})
    with pytest.raises(ConfigError, match="unknown graph"):
        run_config(tmp_path, "x", **{"topology.mode": "decentralized", "topology.graph": "star"})


def test_gossip_run_mixes_personal_adapters_and_resumes_exactly(tmp_path, loaded):
    """A 3-round learned-graph run on the tiny model: each round's graph is row-stochastic, the
    neighbour traffic is counted, each client's adapter is evaluated and saved, and a run killed in
    round 1 and resumed ends with the same adapters and graphs."""
    from fedtune.engine.run_dir import RunDir
    from fedtune.engine.runner import run_experiment

    extra = {"topology.mode": "decentralized", "topology.graph": "learned", "federation.rounds": 3,
             "eval.per_client": True, "eval.every": 3, "topology.delta_from": "start"}
    cfg = run_config(tmp_path, "whole", **extra)
    summary = run_experiment(cfg, loaded=loaded, progress=False)
    rows = metrics_rows(cfg)
    store = RunDir(cfg.run_dir()).clients
    for row in rows:
        graph = torch.tensor(row["aggregation"]["graph"]["weights"], dtype=torch.float64)
        assert graph.shape == (3, 3) and torch.allclose(graph.sum(1), torch.ones(3, dtype=torch.float64), atol=1e-5)
        assert graph.min() >= 0 and row["bytes_up"] > 0
    assert set(summary["final"]["clients"]) == set(summary["final"]["clients_on_global"]) == {"0", "1", "2"}
    assert summary["final"]["clients_on_global"]["0"] != summary["final"]["clients_on_global"]["1"]
    adapters = [ops.load(cfg.run_dir() / "adapters" / f"client_{c}" / "adapter_model.safetensors") for c in range(3)]
    assert not torch.equal(next(iter(adapters[0].values())), next(iter(adapters[1].values())))  # personal, not one model
    assert store.exists()
    from fedtune.report.html import write_report
    page = write_report(cfg.run_dir()).read_text()
    assert "Collaboration graph" in page and 'alt="collaboration graph per round"' in page
    assert "own adapter on the global test set" in page

    cut = run_config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    assert [r["aggregation"]["graph"] for r in metrics_rows(cut)] == [r["aggregation"]["graph"] for r in rows]
    for c in range(3):
        resumed = ops.load(cut.run_dir() / "adapters" / f"client_{c}" / "adapter_model.safetensors")
        assert all(torch.equal(resumed[k], adapters[c][k]) for k in adapters[c])


def test_who_learned_from_whom_averages_the_rounds_graphs():
    """Hand case: client 0 takes 0.6 from client 2 in round 1 and 0.2 in round 2 → mean 0.4."""
    from fedtune.report.collaboration import graphs_of, learned_from

    rows = [{"round": 1, "aggregation": {"graph": {"clients": [0, 1, 2], "kind": "learned",
                                                   "weights": [[0.4, 0, 0.6], [0, 1, 0], [0.5, 0.5, 0]]}}},
            {"round": 2, "aggregation": {"graph": {"clients": [0, 1, 2], "kind": "learned",
                                                   "weights": [[0.6, 0.2, 0.2], [0, 1, 0], [0, 0, 1]]}}},
            {"round": 3}]
    graphs = graphs_of(rows)
    assert [r for r, _ in graphs] == [1, 2]
    assert learned_from(graphs) == [[0, "0.50", "2 (0.40), 1 (0.10)"], [1, "1.00", "none"],
                                    [2, "0.50", "0 (0.25), 1 (0.25)"]]


def test_flower_relay_equals_the_embedded_gossip(tmp_path):
    """On Flower the ServerApp only relays: two real SuperNodes train, then each mixes what its
    neighbours sent (their adapters and, for this round's updates, their round starts; two gossip
    steps: the row it inferred travels back with the second), and the run ends with the embedded
    engine's per-client adapters and graphs."""
    from flower_harness import (
        Federation,
        assert_adapters_close,
        embedded_run,
        read_rows,
        tiny_config,
    )

    extra = {"federation.num_clients": 2, "topology.mode": "decentralized", "topology.graph": "learned",
             "topology.gossip_steps": 2, "topology.delta_from": "round"}
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "flower-run", **extra)
    with Federation(tmp_path) as fed:
        for c in range(2):
            fed.add_node(c, resident=True)
        out = fed.run(config)
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    for c in range(2):
        name = f"adapters/client_{c}/adapter_model.safetensors"
        assert_adapters_close(ops.load(tmp_path / "flower-run" / name), ops.load(reference / name))
    rows, ref_rows = read_rows(tmp_path / "flower-run"), read_rows(reference)
    for row, ref in zip(rows, ref_rows):
        graph, ref_graph = row["aggregation"]["graph"], ref["aggregation"]["graph"]
        assert graph["clients"] == ref_graph["clients"] == [0, 1] and "unmixed" not in row["aggregation"]
        assert torch.allclose(torch.tensor(graph["weights"]), torch.tensor(ref_graph["weights"]), atol=1e-4)
    assert rows[1]["aggregation"]["graph"]["weights"] != rows[0]["aggregation"]["graph"]["weights"]
