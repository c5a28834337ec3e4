"""One small experiment on three engines: embedded, Flower simulation (Ray), and a local
SuperLink with one SuperNode per client (deployment engine on loopback), the last once with
Flower's per-message ClientApp processes training and once with a resident trainer per site;
with --secagg, a third time with resident trainers and secure aggregation (SecAgg+,
``privacy.secure_aggregation`` with num_shares = clients, reconstruction_threshold = 2).

Usage: python benchmarks/engines.py [--model tiny-random|smollm2-135m-instruct] [--rounds 2]
       [--clients 2] [--steps 2] [--secagg]
Prints, per engine, the wall time (process start to summary.json, including model loads),
the peak resident memory summed over every process of the engine, the largest absolute
difference of the final adapter from the embedded engine's (for SecAgg+ this includes its
quantization error), and, from the run's metrics.jsonl, the mean seconds_train, bytes_up and
bytes_down per round; with --secagg also SecAgg+'s extra seconds per round and byte ratios
against the plain resident-trainer run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from common import machine
from safetensors.torch import load_file

from fedtune.flower.deploy import launch, resident_trainer


class PeakRss:
    """Samples the summed RSS of ``roots`` and all their descendants every 0.2 s."""

    def __init__(self):
        self.roots: list[int] = []
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            total = 0
            for pid in list(self.roots):
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**30


def start(cmd, env, log: Path, rss: PeakRss) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    rss.roots.append(proc.pid)
    return proc


def wait_for(log: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log}: {needle!r} not seen")
        time.sleep(0.1)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        try:
            os.killpg(p.pid, 15)
            p.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass


def embedded(config: Path, root: Path) -> tuple[float, float]:
    env = launch.flower_env(root / ".flwr")
    rss, t0 = PeakRss(), time.perf_counter()
    proc = start([sys.executable, "-m", "fedtune.commands.cli", "run", str(config), "--output", str(root / "run")], env,
                 root / "embedded.log", rss)
    if proc.wait() != 0:
        raise RuntimeError((root / "embedded.log").read_text()[-2000:])
    return time.perf_counter() - t0, rss.stop()


def flower(config: Path, root: Path, clients: int, simulation: bool, resident: bool = False) -> tuple[float, float]:
    home = root / ".flwr"
    env = launch.flower_env(home)
    port = launch.free_port()
    rss, t0, procs = PeakRss(), time.perf_counter(), []
    try:
        procs.append(start(launch.superlink_command(port=port, simulation=simulation), env, root / "superlink.log", rss))
        wait_for(root / "superlink.log", "Uvicorn running")
        launch.write_connection(home, "bench", f"127.0.0.1:{port}")
        if not simulation:
            for c in range(clients):
                node = {"threads": max(1, (os.cpu_count() or 1) // clients)}  # nodes share this machine
                if resident:  # as `fedtune flower supernode` runs it
                    socket_path = resident_trainer.new_socket_path()
                    procs.append(start(resident_trainer.command(socket_path), env, root / f"trainer{c}.log", rss))
                    resident_trainer.wait_ready(procs[-1], socket_path)
                    node["trainer-socket"] = str(socket_path)
                procs.append(start(launch.supernode_command(f"127.0.0.1:{port}", c, launch.free_port(),
                                                            extra_node_config=node), env,
                                   root / f"supernode{c}.log", rss))
        app = launch.write_app(config, root / "app")
        fed = {"num-supernodes": clients, "client-resources-num-cpus": 1} if simulation else None
        run = start(launch.flwr_run_command(app, "bench", {"set": f"output.dir={root / 'run'}"}, fed), env,
                    root / "flwr-run.log", rss)
        procs.append(run)
        run.wait(1800)
        if not (root / "run" / "summary.json").exists():
            raise RuntimeError((root / "flwr-run.log").read_text()[-3000:])
        return time.perf_counter() - t0, rss.stop()
    finally:
        stop_all(procs)


def per_round(run_dir: Path) -> tuple[float, float, float]:
    """Mean seconds_train, bytes_up and bytes_down per round, from ``run_dir``'s metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "seconds_train" in r]
    n = max(1, len(rows))
    return tuple(sum(float(r[k]) for r in rows) / n for k in ("seconds_train", "bytes_up", "bytes_down"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--secagg", action="store_true",
                   help="also run the deployment engine with resident trainers and secure aggregation (SecAgg+)")
    args = p.parse_args()
    if args.secagg and args.clients < 2:
        p.error("--secagg needs --clients >= 2 (SecAgg+ needs at least 2 sampled clients per round)")
    work = Path(tempfile.mkdtemp(prefix="fedtune-engines-"))
    base = {
        "name": "engines", "seed": 0, "model": {"name": args.model},
        "data": {"suite": {"entities_per_client": 2, "skill_train_per_client": 16, "test_per_rule": 4},
                 "max_length": 96},
        "federation": {"num_clients": args.clients, "rounds": args.rounds},  # every client every round
        "train": {"steps": args.steps, "batch_size": 4, "lr": 1e-2}, "eval": {"every": 0},
    }
    config = work / "engines.yaml"
    config.write_text(yaml.safe_dump(base))
    # the same experiment under SecAgg+ (the embedded engine refuses this section, hence a second file)
    secure_config = work / "engines-secagg.yaml"
    secure_config.write_text(yaml.safe_dump({
        **base, "privacy": {"secure_aggregation": {"num_shares": args.clients, "reconstruction_threshold": 2}},
    }))
    results = {}
    per_message, resident = f"flower deployment (SuperLink + {args.clients} SuperNodes)", "  same, resident trainers"
    secure = "  same, resident trainers + SecAgg+"
    engines = [
        ("embedded", "embedded", lambda r: embedded(config, r)),
        ("simulation", "flower simulation (Ray)", lambda r: flower(config, r, args.clients, simulation=True)),
        ("deployment", per_message, lambda r: flower(config, r, args.clients, simulation=False)),
        ("deployment-resident", resident, lambda r: flower(config, r, args.clients, simulation=False, resident=True)),
    ]
    if args.secagg:
        engines.append(("deployment-resident-secagg", secure,
                        lambda r: flower(secure_config, r, args.clients, simulation=False, resident=True)))
    for folder, name, run in engines:
        root = work / folder
        root.mkdir(parents=True, exist_ok=True)
        seconds, gib = run(root)
        results[name] = (seconds, gib, load_file(str(root / "run" / "adapter" / "adapter_model.safetensors")),
                         per_round(root / "run"))
    ref = results["embedded"][2]
    print(f"machine: {machine()}")
    print(f"experiment: {args.model}, {args.clients} clients, {args.rounds} rounds x {args.steps} steps, FedAvg")
    print(f"{'engine':<45} {'wall s':>7} {'peak RSS GiB':>12} {'max |Δ adapter|':>16} "
          f"{'train s/round':>13} {'up kB/round':>12} {'down kB/round':>13}")
    for name, (seconds, gib, adapter, (train_s, up, down)) in results.items():
        diff = max(float((adapter[k] - ref[k]).abs().max()) for k in ref)
        print(f"{name:<45} {seconds:>7.1f} {gib:>12.2f} {diff:>16.2e} "
              f"{train_s:>13.2f} {up / 1e3:>12.1f} {down / 1e3:>13.1f}")
    print(f"deployment wall time, resident trainers / per-message ClientApps: "
          f"{results[resident][0] / results[per_message][0]:.2f}x")
    if args.secagg:
        (plain_s, plain_up, plain_down), (sec_s, sec_up, sec_down) = results[resident][3], results[secure][3]

        def ratio(a: float, b: float) -> str:
            return f"{a / b:.2f}x" if b else "n/a"

        print(f"SecAgg+ vs plain resident trainers, per round: {sec_s - plain_s:+.2f} s train, "
              f"bytes up {ratio(sec_up, plain_up)}, bytes down {ratio(sec_down, plain_down)}, "
              f"wall time {results[secure][0] / results[resident][0]:.2f}x")
    print(f"run directories under {work}")


if __name__ == "__main__":
    main()
