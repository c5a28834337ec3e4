"""Benchmark tables over seeds: every row run with several seeds, one job at a time, reported as
mean ± 95% interval, with the per-seed values in a JSON next to the table.

How a table is made (``benchmarks/algorithms.py`` is the model):
    results = run_rows({"fedavg": lambda seed: {...metrics...}, ...}, seeds=[0, 1, 2],
                       store=Path("algorithms.json"), command="python benchmarks/algorithms.py ...")
    print(markdown(results, [("exact_match", "exact match %", 1)]))
    print(paired_markdown(results, [("fedavg", "local")], [("exact_match", "exact match %", 1)]))

The interval is Student's t: mean ± t(0.975, n−1)·s/√n over the n seeds (s the sample standard
deviation), so 3 seeds give a wide interval (t = 4.30) — honest about what 3 runs can show.
Rows that share a seed share the suite, the adapter's init and the batches, so the paired
difference against a baseline row (``paired_markdown``: one interval over the per-seed
differences) removes that shared variance and can show a gap the two rows' own intervals hide.
The JSON is written after every run and read back at the start, so an interrupted table resumes
with the runs it has. While each run goes, ``CoreWatch`` samples how much CPU other processes
used; the table says whether the cores were shared (timings of a shared run are not comparable).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from common import machine
from scipy.stats import t as student_t

SHARED_CORES = 0.25  # mean CPU of other processes (in cores) above which a run counts as sharing the cores


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval); the half-width is nan for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, student_t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def mean_pm(values: list[float], digits: int = 1) -> str:
    """"26.0 ± 3.1" (the 95% interval's half-width); "—" for no values."""
    if not values:
        return "—"
    mean, half = interval(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


class CoreWatch:
    """How much CPU other processes (not this one or its children) used while the block ran:
    ``other_cores``, their mean load in cores (system CPU time minus ours, over wall time)."""

    def _busy_seconds(self) -> float:
        """CPU seconds all processes but ours have used (user + system + nice), via psutil."""
        total = psutil.cpu_times()
        me = psutil.Process()
        ours = 0.0
        for proc in [me, *me.children(recursive=True)]:
            try:
                ours += sum(proc.cpu_times()[:4])  # user, system and its waited-for children's
            except psutil.NoSuchProcess:  # a child that just ended
                pass
        return total.user + total.system + getattr(total, "nice", 0.0) - ours

    def __enter__(self) -> "CoreWatch":
        self._start, self._at = self._busy_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.other_cores = max(0.0, self._busy_seconds() - self._start) / max(time.monotonic() - self._at, 1e-9)


def run_rows(rows: dict[str, Callable[[int], dict[str, float]]], seeds: list[int], store: Path,
             command: str) -> dict:
    """Run every row with every seed (skipping the runs ``store`` already holds) and return
    {"command", "seeds", "machines", "rows": {row: {seed: {metrics..., "other_cores": x}}}}."""
    data = json.loads(store.read_text()) if store.exists() else {}
    data.update({"command": command, "seeds": seeds, "cpus": os.cpu_count()})
    data.setdefault("rows", {})
    here = machine()
    if here not in data.setdefault("machines", []):  # a table resumed elsewhere says so
        data["machines"].append(here)
    for name, run in rows.items():
        done = data["rows"].setdefault(name, {})
        for seed in seeds:
            if str(seed) in done:
                continue
            with CoreWatch() as watch:
                metrics = run(seed)
            done[str(seed)] = {**metrics, "other_cores": round(watch.other_cores, 3)}
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in done[str(seed)].items()), flush=True)
            store.write_text(json.dumps(data, indent=1))
    return data


def values(result: dict, row: str, metric: str, seeds: list[int]) -> list[float]:
    """The row's per-seed values of ``metric`` (runs stored before the metric existed have none)."""
    runs = result["rows"][row]
    return [runs[str(s)][metric] for s in seeds if metric in runs.get(str(s), {})]


def paired(result: dict, row: str, baseline: str, metric: str, seeds: list[int]) -> list[float]:
    """Per-seed differences ``row − baseline`` of ``metric``, over the seeds both rows hold it for."""
    a, b = result["rows"][row], result["rows"][baseline]
    both = [str(s) for s in seeds if metric in a.get(str(s), {}) and metric in b.get(str(s), {})]
    return [a[s][metric] - b[s][metric] for s in both]


def markdown(result: dict, columns: list[tuple[str, str, int]]) -> str:
    """The table: one line per row, each column "mean ± 95% half-width" over the seeds, then
    whether any run shared the cores (mean CPU of other processes during the run)."""
    seeds = result["seeds"]
    lines = ["| row | " + " | ".join(h for _, h, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in result["rows"]:
        cells = [mean_pm(values(result, row, key, seeds), digits) for key, _, digits in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    other = [r["other_cores"] for runs in result["rows"].values() for r in runs.values()]
    shared = max(other, default=0.0)
    lines.append("")
    lines.append(f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); mean ± 95% t-interval. Other processes used "
                 f"at most {shared:.2f} cores during any run ("
                 + ("the cores were **shared**: timings are not comparable" if shared > SHARED_CORES
                    else "one job at a time: nothing else ran") + f"). Machine: {'; '.join(result.get('machines', []))}. "
                 f"Per-seed values: the JSON. Command: `{result['command']}`")
    return "\n".join(lines)


def paired_markdown(result: dict, pairs: list[tuple[str, str]], columns: list[tuple[str, str, int]]) -> str:
    """A table of paired differences: one line per (row, baseline) pair, each column the mean ±
    95% interval of the per-seed ``row − baseline`` differences."""
    seeds = result["seeds"]
    lines = ["| row − baseline (paired by seed) | " + " | ".join(f"Δ {h}" for _, h, _ in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for row, baseline in pairs:
        cells = [mean_pm(paired(result, row, baseline, key, seeds), digits) for key, _, digits in columns]
        lines.append(f"| {row} − {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
