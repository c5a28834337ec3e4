"""Decentralized gossip on a clustered suite: does the learned graph find the clusters, and does
it beat FedAvg, fixed graphs and local-only training on each client's own task?

Usage: python benchmarks/decentralized_clusters.py [--model smollm2-135m-instruct] [--clients 4]
           [--clusters 2] [--rounds 5] [--steps 4] [--methods local,fedavg,complete,ring,learned,learned_round]
           [--out DIR]

The built-in suite with ``data.suite.clusters``: client c is in cluster c % clusters; every
cluster sees the same rule titles but answers them with a different function, so clients of one
cluster help each other and clusters interfere. Every run: the same seed, data, model, rounds and
steps; only the algorithm / topology differs. Per method it reports the mean over clients of the
exact match on the client's own test split (``eval.clients``: the client's own adapter, or the
global model for FedAvg), the mean on the global test (which mixes every cluster's answers, so no
single model can get the skills right for all), and, for the gossip graphs, the *cluster
recovery*: the share of each client's off-diagonal graph weight that goes to clients of its own
cluster, averaged over clients and rounds (chance = (m-1)/(n-1) for clusters of m of n clients).
Per-run figures go to DIR/results.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.models.loader import load_model

METHODS = {
    "local": ("local-only", ["algorithm.name=local"]),
    "fedavg": ("FedAvg", ["algorithm.name=fedavg"]),
    "complete": ("gossip, complete", ["topology.mode=decentralized", "topology.graph=complete"]),
    "ring": ("gossip, ring", ["topology.mode=decentralized", "topology.graph=ring"]),
    "learned": ("gossip, learned (Δ since the start, pFedGraph)", ["topology.mode=decentralized",
                                                                    "topology.graph=learned",
                                                                    "topology.delta_from=start"]),
    "learned_round": ("gossip, learned (Δ this round)", ["topology.mode=decentralized", "topology.graph=learned",
                                                        "topology.delta_from=round"]),
}


def cluster_recovery(rows: list[dict], cluster_of) -> float | None:
    """Mean over rounds and clients of the share of a client's off-diagonal weight that goes to
    its own cluster (clients that took nothing from others are left out); None without graphs."""
    shares = []
    for row in rows:
        graph = (row.get("aggregation") or {}).get("graph")
        if not graph:
            continue
        ids, weights = graph["clients"], graph["weights"]
        for i, a in enumerate(ids):
            off = [(b, w) for j, (b, w) in enumerate(zip(ids, weights[i])) if j != i]
            total = sum(w for _, w in off)
            if total > 1e-12:
                shares.append(sum(w for b, w in off if cluster_of(b) == cluster_of(a)) / total)
    return sum(shares) / len(shares) if shares else None


def main():
    p = suite_arguments(__doc__.splitlines()[0], rounds=5, steps=4)
    p.add_argument("--clusters", type=int, default=2)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--rules", default=None, help="rules in play (default: 5 that every cluster count up to 3 allows)")
    p.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="decentralized-clusters-"))
    rules = args.rules or ("echo,bracket,suffix,swap,reverse" if args.clusters <= 2 else "echo,bracket,suffix,reverse,last")
    base = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, rules),
            f"data.suite.clusters={args.clusters}", "train.lr=3e-3", "eval.every=0", "eval.per_client=true",
            *args.set]
    loaded = load_model(args.model)
    results = {}
    for key in args.methods.split(","):
        label, sets = METHODS[key]
        run_dir = out / key
        cfg = load_config(demo_config_path(), [*base, *sets, f"output.dir={run_dir}", f"name={key}"])
        started = time.perf_counter()
        s = run_experiment(cfg, loaded=loaded, progress=False)
        rows = [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
        final = s["final"]
        own = {c: 100 * v["exact_match"] for c, v in final["clients"].items()}
        results[key] = {
            "label": label,
            "own_exact_match": sum(own.values()) / len(own),
            "own_exact_match_per_client": own,
            "global_exact_match": 100 * final["global"]["exact_match"],
            "cluster_recovery": cluster_recovery(rows, cfg.data.suite.cluster_of),
            "graphs": [r["aggregation"]["graph"] for r in rows if (r.get("aggregation") or {}).get("graph")],
            "seconds": time.perf_counter() - started,
        }
        print(f"{key}: own {results[key]['own_exact_match']:.1f}  global {results[key]['global_exact_match']:.1f}  "
              f"recovery {results[key]['cluster_recovery']}  {results[key]['seconds']:.0f}s", flush=True)
        (out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                      "overrides": base, "results": results}, indent=2))
    m = args.clients / args.clusters  # mean cluster size
    chance = (m - 1) / (args.clients - 1)
    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print(f"{args.clients} clients in {args.clusters} clusters; cluster recovery at chance = {chance:.2f}\n")
    print("| method | own split EM % (mean over clients) | global test EM % | cluster recovery | seconds |")
    print("|---|---|---|---|---|")
    for r in results.values():
        rec = f"{r['cluster_recovery']:.2f}" if r["cluster_recovery"] is not None else "—"
        print(f"| {r['label']} | {r['own_exact_match']:.1f} | {r['global_exact_match']:.1f} | {rec} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
