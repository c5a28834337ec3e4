"""Differential privacy on the built-in suite and model: utility and canary exposure at several ε,
for client-level DP (DP-FedAvg, fixed and adaptive clipping) and sample-level DP-SGD, plus
DP-SGD's throughput cost against the same local loop without DP, measured in the same run.

Usage: python benchmarks/privacy.py [--model smollm2-135m-instruct] [--clients 4] [--rounds 3]
           [--steps 4] [--epsilons inf,8,4,1] [--modes client_fixed,client_adaptive,sample]
           [--clip 10] [--candidates 200] [--lr 3e-3] [--no-baseline] [--part all|runs|throughput] [--out DIR]

Every run: the same seed and data, with canaries planted in clients 0 and 1 (one secret each,
10 copies); ε is the framework's own calibration (``target_epsilon`` over the run's rounds or
DP steps, δ = 1e-5). Rows: no DP; clipping without noise (ε = ∞, what clipping alone costs);
then each mode at each finite ε. Prints a markdown table: global exact match, mean and max
canary exposure (bits, rank among ``candidates`` random secrets), secrets extracted by greedy
decoding, ε spent, noise multiplier. Then the throughput table: tokens/s of one client's round
without DP and with DP-SGD (``sampling: shuffle``, so both see the same batches), best of 3.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

from common import machine, suite_arguments, suite_grid

from fedtune.client.state_store import ClientStateStore
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.commands.demo import demo_config_path
from fedtune.config import load_config
from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.loader import load_model
from fedtune.privacy.dp_sgd import sample_level_privacy
from fedtune.protocol import ClientInstruction


def privacy_setting(mode: str, eps: float, clip: float) -> dict:
    """The ``privacy`` overrides of one row; ε = ∞ with a mode means clipping without noise."""
    budget = {"noise_multiplier": 0.0} if math.isinf(eps) else {"target_epsilon": eps}
    if mode == "client_fixed":
        return {"client_level": {"clip_norm": clip, **budget}}
    if mode == "client_adaptive":  # σ_b = m: the count noise must exceed z/2 (Andrew et al.)
        return {"client_level": {"clipping": "adaptive", "clip_norm": clip, "clipped_count_stddev": 4.0, **budget}}
    return {"sample_level": {"clip_norm": 1.0, **budget}}


def spent(summary: dict, run_dir: Path) -> tuple[float | None, str | None]:
    """(ε, noise multiplier) the run reports: client-level, or the worst client's DP-SGD ε with the
    range of the clients' own calibrated z."""
    p = summary.get("privacy", {})
    if "client_level" in p:
        return p["client_level"]["epsilon"], f"{p['client_level']['noise_multiplier']:.2f}"
    if "sample_level" in p:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        zs = [m["dp_noise_multiplier"] for r in rows for m in r["train"].values() if "dp_noise_multiplier" in m]
        return p["sample_level"]["epsilon_max"], f"{min(zs):.2f}–{max(zs):.2f}"
    return None, None


def throughput(cfg, loaded, repeats: int = 3) -> tuple[float, float]:
    """Best tokens/s of client 0's round without DP and with DP-SGD, alternating, same batches."""
    ws = build_workspace(cfg, loaded)
    data = LocalData(0, ws.train_tokens[0])
    store = ClientStateStore(Path(tempfile.mkdtemp(prefix="privacy-store-")))
    plain = LocalTrainer(ws.model, ws.tokenizer, cfg.train, store, seed=cfg.seed)
    private = LocalTrainer(ws.model, ws.tokenizer, cfg.train, store, seed=cfg.seed, privacy=sample_level_privacy(cfg))
    best = {"plain": 0.0, "dp": 0.0}
    for r in range(repeats):
        ins = ClientInstruction(client_id=0, round=r, lr=cfg.train.lr, steps=cfg.train.steps)
        for name, trainer in (("plain", plain), ("dp", private)):
            store.round = r
            m = trainer.train(ins, ws.initial_adapter, data).metrics
            best[name] = max(best[name], m["tokens"] / m["seconds_compute"])
    return best["plain"], best["dp"]


def main():
    p = suite_arguments(__doc__.splitlines()[0], rounds=3, steps=4)
    p.add_argument("--epsilons", default="inf,8,4,1")
    p.add_argument("--modes", default="client_fixed,client_adaptive,sample")
    p.add_argument("--clip", type=float, default=10.0, help="client-level clipping norm C (initial C if adaptive)")
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-3, help="local learning rate (DP-SGD's noise may want a lower one)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run without DP")
    p.add_argument("--part", choices=["all", "runs", "throughput"], default="all",
                   help="the ε table, the throughput table, or both (time the throughput alone on the machine)")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="privacy-"))
    base = [f"model.name={args.model}", *suite_grid(args.clients, args.rounds, args.steps, "echo,bracket,suffix,swap"),
            f"train.lr={args.lr}", "eval.every=0", "eval.metrics=[exact_match, canary_exposure]",
            f"data.canaries={json.dumps({'clients': [0, 1], 'repeats': 10, 'candidates': args.candidates})}"]
    loaded = load_model(args.model)
    if args.part != "throughput":
        privacy_table(args, base, loaded, out)
    if args.part != "runs":
        tp_cfg = load_config(demo_config_path(), [*base, f"output.dir={out / 'throughput'}",
                                                  "privacy.sample_level={clip_norm: 1.0, noise_multiplier: 1.0, sampling: shuffle}"])
        plain, dp = throughput(tp_cfg, loaded)
        print(f"\nmachine: {machine()}\nDP-SGD throughput (client 0, {args.steps} steps of batch 4, best of 3): "
              f"without DP {plain:.0f} tokens/s, with DP-SGD {dp:.0f} tokens/s, slowdown {plain / dp:.2f}x")


def privacy_table(args, base: list[str], loaded, out: Path) -> None:
    """Run every row, print the ε table."""
    rows = [] if args.no_baseline else [("no DP", None)]
    for mode in args.modes.split(","):
        rows += [(f"{mode} ε={e}", privacy_setting(mode, float(e), args.clip)) for e in args.epsilons.split(",")]
    results = {}
    for label, privacy in rows:
        run_dir = out / label.replace(" ", "_").replace("=", "")
        sets = [*base, f"output.dir={run_dir}", f"name={run_dir.name}"]
        sets += [f"privacy.{k}={json.dumps(v)}" for k, v in (privacy or {}).items()]
        started = time.perf_counter()
        try:
            s = run_experiment(load_config(demo_config_path(), sets), loaded=loaded, progress=False)
        except Exception as e:  # e.g. adaptive clipping's z >= 2σ_b: a row that cannot run says why
            results[label] = {"error": str(e)}
            print(f"{label}: {e}", flush=True)
            continue
        g = s["final"]["global"]
        eps, z = spent(s, run_dir)
        results[label] = {"exact_match": 100 * g["exact_match"], "exposure": g["canary_exposure"],
                          "exposure_max": g["canary_exposure_max"], "extracted": g["canary_extracted"],
                          "epsilon": eps, "noise_multiplier": z, "seconds": time.perf_counter() - started}
        print(f"{label}: {results[label]}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\nmachine: {machine()}\nrun directories: {out}\n")
    print("| setting | ε spent | z | exact match % | exposure mean / max (bits) | extracted | seconds |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        if "error" in r:
            print(f"| {label} | — | — | not run: {r['error']} | | | |")
            continue
        eps = "∞" if r["epsilon"] is None or math.isinf(r["epsilon"]) else f"{r['epsilon']:.2f}"
        z = r["noise_multiplier"] or "—"
        print(f"| {label} | {eps} | {z} | {r['exact_match']:.1f} | {r['exposure']:.2f} / {r['exposure_max']:.2f} | "
              f"{r['extracted']} / 2 | {r['seconds']:.0f} |")



if __name__ == "__main__":
    main()
