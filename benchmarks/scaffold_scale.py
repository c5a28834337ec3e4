"""Peak memory of SCAFFOLD with 747 clients (10 sampled per round) vs 10 clients, on tiny-random.

Usage: python benchmarks/scaffold_scale.py [--rounds 5]
Each run is a separate `fedtune run` process measured with /usr/bin/time -v (maximum resident
set size). Client control variates live on disk, so the 747-client run should stay within 1.2x.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine


def peak_rss_mb(num_clients: int, rounds: int, out: Path) -> tuple[float, float]:
    cfg = out / "c.yaml"
    cfg.write_text("name: scale\n")
    sets = {"model.name": "tiny-random", "algorithm.name": "scaffold", "federation.num_clients": num_clients,
            "federation.clients_per_round": 10, "federation.rounds": rounds, "train.steps": 2,
            "train.batch_size": 4, "data.suite.entities_per_client": 2, "data.suite.skill_train_per_client": 8,
            "data.suite.test_per_rule": 2, "eval.every": 0, "output.dir": out / f"run{num_clients}"}
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "fedtune.commands.cli", "run", str(cfg)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr).group(1)
    return rss, wall


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp())
    small, t_small = peak_rss_mb(10, args.rounds, out)
    large, t_large = peak_rss_mb(747, args.rounds, out)
    print(f"machine: {machine()}")
    print(f"SCAFFOLD, 10 sampled per round, {args.rounds} rounds, tiny-random")
    print(f" 10 clients: peak RSS {small:.0f} MB  (wall {t_small})")
    print(f"747 clients: peak RSS {large:.0f} MB  (wall {t_large})")
    print(f"ratio 747/10: {large / small:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
