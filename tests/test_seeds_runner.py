"""The benchmark tables' seeds runner (benchmarks/seeds.py): intervals, paired differences, resume."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # seeds.py imports its sibling common.py, as the scripts do
_spec = importlib.util.spec_from_file_location("seeds", BENCHMARKS / "seeds.py")
seeds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeds)


def test_interval_is_the_student_t_half_width():
    # [1, 2, 3]: mean 2, sample sd 1, t(0.975, 2) = 4.302653 → half-width 4.302653 / √3
    mean, half = seeds.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6)
    assert seeds.mean_pm([5.0]) == "5.0" and seeds.mean_pm([]) == "—"


def test_pairing_by_seed_removes_the_shared_variance():
    # Both rows swing by seed, but b is always a + 1: paired difference 1 ± 0
    result = {"seeds": [0, 1, 2], "command": "x", "rows": {
        "a": {str(s): {"m": m, "other_cores": 0.0} for s, m in enumerate([10.0, 30.0, 20.0])},
        "b": {str(s): {"m": m, "other_cores": 0.0} for s, m in enumerate([11.0, 31.0, 21.0])}}}
    assert seeds.paired(result, "b", "a", "m", [0, 1, 2]) == [1.0, 1.0, 1.0]
    table = seeds.paired_markdown(result, [("b", "a")], [("m", "metric", 1)])
    assert "| b − a | 1.0 ± 0.0 |" in table
    assert "| b | 21.0 ± 24.8 |" in seeds.markdown(result, [("m", "metric", 1)])


def test_a_rerun_skips_the_runs_the_json_holds(tmp_path):
    calls = []

    def run(seed):
        calls.append(seed)
        return {"m": float(seed)}

    store = tmp_path / "t.json"
    seeds.run_rows({"row": run}, [0, 1], store, "cmd")
    result = seeds.run_rows({"row": run}, [0, 1, 2], store, "cmd")
    assert calls == [0, 1, 2]  # seeds 0 and 1 came from the JSON the second time
    assert json.loads(store.read_text())["rows"]["row"]["2"]["m"] == 2.0 and result["seeds"] == [0, 1, 2]
