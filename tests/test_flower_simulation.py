"""Flower's simulation engine (Ray) runs the same ServerApp/ClientApp: `flwr run` against a
simulation SuperLink gives the embedded engine's final adapter — for SFT, for β-DPO (whose EMA
statistics live on the nodes between rounds) and for DPO against the run's start adapter (sent
by the server with every instruction)."""

from __future__ import annotations

import pytest
from flower_harness import Federation, assert_adapters_close, embedded_run, final_adapter, read_rows, tiny_config


@pytest.mark.parametrize("objective, reference", [("sft", "base"), ("beta-dpo", "base"), ("dpo", "start")])
def test_simulation_engine_matches_embedded_engine(tmp_path, objective, reference):
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run",
                         **{"train.objective": objective, "train.reference": reference})
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 2, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    assert_adapters_close(final_adapter(tmp_path / "sim-run"), final_adapter(reference))
    rows = read_rows(tmp_path / "sim-run")
    if reference == "start":  # the reference adapter travels too: twice the adapter bytes down
        assert rows[0]["bytes_down"] > 1.9 * rows[0]["bytes_up"]
    assert [set(r["train"]) for r in rows] == [{"0", "1"}, {"0", "1"}]
    if objective == "beta-dpo":  # round 2's β depends on round 1's EMA state kept on each node
        embedded = read_rows(tmp_path / "embedded-run")
        for flower_row, embedded_row in zip(rows, embedded):
            for cid, metrics in flower_row["train"].items():
                assert metrics["pairs_kept"] == 3.0
                assert metrics["beta_used"] == pytest.approx(embedded_row["train"][cid]["beta_used"], abs=1e-6)


def test_sft_then_dpo_stages_on_flower_match_embedded(tmp_path):
    """A multi-stage config runs each stage as a run over the same Flower federation; the DPO
    stage starts from, and is referenced to, the SFT stage's adapter."""
    stages = '[{train: {objective: sft}}, {train: {objective: dpo, reference: start}, federation: {rounds: 1}}]'
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run", stages=stages)
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 2, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    for stage in ("stage_0", "stage_1"):
        assert_adapters_close(final_adapter(tmp_path / "sim-run" / stage), final_adapter(reference / stage))
    assert len(read_rows(tmp_path / "sim-run" / "stage_1")) == 1
