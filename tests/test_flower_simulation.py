"""Flower's simulation engine (Ray) runs the same ServerApp/ClientApp: `flwr run` against a
simulation SuperLink gives the embedded engine's final adapter — for SFT, for β-DPO (whose EMA
statistics live on the nodes between rounds) and for DPO against the run's start adapter (sent
by the server with every instruction), under attacks, the post-hoc defense and the server's
synthesis. And `flwr run .` runs the repository's own Flower app."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from flower_harness import (
    Federation,
    assert_adapters_close,
    embedded_run,
    final_adapter,
    read_rows,
    stop_local_superlink,
    tiny_config,
)

from fedtune.flower.deploy import launch


@pytest.mark.parametrize("objective, reference", [("sft", "dp-sgd"), ("dpo", "start")])
def test_simulation_engine_matches_embedded_engine(tmp_path, objective, reference):
    """Flower's simulation engine and the embedded one end with the same adapter: SFT under DP-SGD
    (Poisson steps, noise and each node's own accountant state across rounds; plain SFT on Flower
    is the deployment test's), and DPO with the start adapter as reference (it travels to the
    nodes) with issue 16's three client-side decisions on the wire at once: selective layers (the
    gradient probe a second exchange of the round), FedDQC's IRA filter and schedule (scores in
    each node's store) and int8 updates with stochastic rounding."""
    extra = {}
    if objective == "dpo":
        extra = {"train.objective.reference": reference, "communication.compress": "int8",
                 "selective": {"layers": 1, "strategy": "strategic", "balance": 0.5},
                 "quality": {"score": "ira", "select_rate": 0.5, "stages": 2}}
    if reference == "dp-sgd":
        extra = {"privacy.sample_level": {"clip_norm": 1.0, "noise_multiplier": 0.8}}
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run", **{"train.objective.name": objective}, **extra)
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 2, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    assert_adapters_close(final_adapter(tmp_path / "sim-run"), final_adapter(reference))
    rows = read_rows(tmp_path / "sim-run")
    if reference == "start":  # the reference adapter travels too: more than twice the adapter bytes down
        assert rows[0]["bytes_down"] > 1.9 * rows[0]["bytes_up"]
        embedded = read_rows(tmp_path / "embedded-run")
        assert [r["selective"]["layers"] for r in rows] == [r["selective"]["layers"] for r in embedded]
        assert [m["quality_kept"] for r in rows for m in r["train"].values()] == [
            m["quality_kept"] for r in embedded for m in r["train"].values()]
    assert [set(r["train"]) for r in rows] == [{"0", "1"}, {"0", "1"}]
    if "privacy.sample_level" in extra:  # round 2's ε composes round 1's steps, counted on each node
        embedded = read_rows(tmp_path / "embedded-run")
        assert [r["privacy"] for r in rows] == [r["privacy"] for r in embedded]
        assert rows[1]["privacy"]["sample_level"]["epsilon"]["0"] > rows[0]["privacy"]["sample_level"]["epsilon"]["0"]


def test_sft_then_dpo_stages_on_flower_match_embedded(tmp_path):
    """A multi-stage config runs each stage as a run over the same Flower federation; the DPO
    stage starts from, and is referenced to, the SFT stage's adapter. Both stages run FedSP: the
    nodes load the auxiliary model the server saved, keep their own trained copy of it in their
    state between rounds and stages' rounds, and send only the prefix."""
    stages = '[{train: {objective: sft}}, {train: {objective: {name: dpo, reference: start}}, federation: {rounds: 1}}]'
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run", stages=stages,
                         offsite="{method: fedsp}", **{"model.adapter": "{method: prefix, num_virtual_tokens: 4}"})
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 2, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    for stage in ("stage_0", "stage_1"):
        assert_adapters_close(final_adapter(tmp_path / "sim-run" / stage), final_adapter(reference / stage))
        rows = read_rows(tmp_path / "sim-run" / stage)
        assert all("model_loss" in m for r in rows for m in r["train"].values())  # FedSP's model phase ran
        # the prefix only, in Flower's framing (the auxiliary model it trained is 12 MB per client)
        assert rows[0]["bytes_up"] < 1.2 * read_rows(reference / stage)[0]["bytes_up"] < 20_000
    assert len(read_rows(tmp_path / "sim-run" / "stage_1")) == 1


def test_flwr_run_dot_runs_the_repository_app(tmp_path):
    """`flwr run .` in the repository: pyproject.toml's [tool.flwr.app] components, run config
    and fedtune keys (name, num_clients) on Flower's local simulation engine."""
    repo = Path(__file__).resolve().parents[1]
    home, run = tmp_path / ".flwr", tmp_path / "run"
    env = {**launch.flower_env(home), "HF_HUB_OFFLINE": "1"}
    overrides = f"model.name=tiny-random; federation.rounds=1; train.steps=1; eval.every=0; output.dir={run}"
    cmd = launch.flwr_run_command(repo, "local", {"set": overrides}, {"num-supernodes": 2})
    try:
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        stop_local_superlink(home)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "run finished" in out, out[-3000:]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["name"] == "flower-demo" and cfg["federation"]["num_clients"] == 2  # from pyproject.toml
    assert json.loads((run / "summary.json").read_text())["engine"] == "flower"
    assert [set(r["train"]) for r in read_rows(run)] == [{"0", "1"}]


def assert_attack_rows_match(rows: list[dict], embedded: list[dict]) -> None:
    for row, other in zip(rows, embedded):
        assert row["attack"]["clients"] == [1] and row["aggregation"]["rule"] == "median"
        assert row["attack"]["distance_from_benign_mean"] == pytest.approx(
            other["attack"]["distance_from_benign_mean"], rel=1e-3, abs=1e-6)


def test_omniscient_attack_on_flower_matches_the_embedded_engine(tmp_path):
    """ALIE (omniscient: it needs the round's benign updates) runs in the ServerApp's collusion
    channel under a robust rule; the final adapter and the ground-truth rows equal the embedded
    run's. (An attack on the attacker's own node is in the next test.)"""
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run", **{
        "federation.num_clients": 3, "federation.rounds": 1, "aggregation.reducer": {"name": "median"},
        "attack": {"method": "alie", "clients": [1]}})
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 3, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    assert_adapters_close(final_adapter(tmp_path / "sim-run"), final_adapter(reference))
    assert_attack_rows_match(read_rows(tmp_path / "sim-run"), read_rows(reference))


def test_attacks_defense_and_server_synthesis_on_flower_match_the_embedded_engine(tmp_path):
    """One Flower run with everything that acts beside plain training: a sign-flip attacker on its
    own node under the median, malicious data holders (each node builds its own suite data), the
    server's KnowledgeSG step and its level-3 post-hoc defense after the last round. The final
    adapter, the attack's ground truth, the synthesis record and the defense's pairs equal the
    embedded run's."""
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "sim-run", **{
        "federation.num_clients": 3, "federation.rounds": 1, "data.suite.forbidden_topic": "password",
        "data.suite.malicious_clients": [2], "aggregation.reducer": {"name": "median"},
        "attack": {"method": "sign_flip", "clients": [1]},
        "synth": {"method": "knowledgesg", "n": 2, "steps": 1, "generation": {"backend": "local", "max_new_tokens": 8}},
        "defense.posthoc": {"level": 3, "steps": 2, "count": 4, "filter_refusals": False}})
    with Federation(tmp_path, simulation=True) as fed:
        out = fed.run(config, federation_config={"num-supernodes": 3, "client-resources-num-cpus": 1})
    assert "run finished" in out, out[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    assert_adapters_close(final_adapter(tmp_path / "sim-run"), final_adapter(reference))
    assert_attack_rows_match(read_rows(tmp_path / "sim-run"), read_rows(reference))
    synthesized = [tmp_path / "sim-run" / "synth" / "knowledgesg.jsonl", reference / "synth" / "knowledgesg.jsonl"]
    assert synthesized[0].read_text() == synthesized[1].read_text() != ""
    last, other = read_rows(tmp_path / "sim-run")[-1], read_rows(reference)[-1]
    assert last["synth"]["attempts"] == other["synth"]["attempts"] == 2
    assert last["defense"]["pairs_used"] == other["defense"]["pairs_used"] == 8
    assert "harmless_rate" in last["eval"]["global"]
    rounds = len(read_rows(reference))
    saved = [(tmp_path / "sim-run" / "defense" / f"round_{rounds - 1}.jsonl"),
             (reference / "defense" / f"round_{rounds - 1}.jsonl")]
    assert saved[0].read_text() == saved[1].read_text()
