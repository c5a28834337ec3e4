"""Flower's simulation engine (Ray) runs the same ServerApp/ClientApp: `flwr run` against a
simulation SuperLink gives the embedded engine's final adapter."""

from __future__ import annotations

from flower_harness import Federation, assert_adapters_close, embedded_run, final_adapter, read_rows, tiny_config


def test_simulation_engine_matches_embedded_engine(tmp_path):
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run")
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 2, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    assert_adapters_close(final_adapter(tmp_path / "sim-run"), final_adapter(reference))
    rows = read_rows(tmp_path / "sim-run")
    assert [set(r["train"]) for r in rows] == [{"0", "1"}, {"0", "1"}]
