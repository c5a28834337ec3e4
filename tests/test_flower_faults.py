"""Faults on the Flower deployment engine: a SuperNode stopped in the middle of a round.

With ``min-replies`` met the round completes with the other clients and names the missing one;
below it the round fails with a clear message, nothing of it is written, and the run resumes
from its last checkpoint once a node is back, dropping node-side state the failed round wrote.
(A node sending a non-finite update is covered
in test_flower_deployment.py.)
"""

from __future__ import annotations

import json

from flower_harness import (
    Federation,
    assert_adapters_close,
    embedded_run,
    final_adapter,
    read_rows,
    tiny_config,
)


def test_stopped_node_min_replies_failure_and_resume(tmp_path):
    run = tmp_path / "fault-run"
    config = tiny_config(tmp_path / "tiny.yaml", run)
    with Federation(tmp_path) as fed:
        node0, node1 = fed.add_node(0), fed.add_node(1)
        node1.wait_for("SuperNode ID:")
        node1_id = node1.text().split("SuperNode ID:")[1].split()[0]
        flwr = fed.start_run(config, **{"min-replies": 1})
        # Round 0: node 1 stops while its ClientApp starts -> client 0 alone meets min-replies=1.
        node1.wait_for("Receiving: train", timeout=120)
        node1.stop()
        # Round 1: node 0 stops too -> 0 replies < 1: the round fails, checkpoint of round 0 stays.
        node0.wait_for("Receiving: train", count=2, timeout=120)
        node0.stop()
        flwr.popen.wait(120)
        out = flwr.text()
        assert "round 1 failed: 0 of 2 sampled clients replied, 1 required" in out, out[-3000:]
        assert "resume" in out
        rows = read_rows(run)
        assert [r["round"] for r in rows] == [0]
        assert set(rows[0]["train"]) == {"0"} and f"node {node1_id}" in rows[0]["failed"]["1"]
        assert (run / "checkpoints" / "LATEST").read_text().strip() == "round_00000"
        assert not (run / "summary.json").exists()

        # Node 0 comes back; the run resumes from round 0's checkpoint and finishes without client 1.
        fed.add_node(0)
        out = fed.run(config, resume=True, **{"min-replies": 1, "node-wait": 2.0})
    assert "run finished" in out, out[-3000:]
    rows = read_rows(run)
    assert [r["round"] for r in rows] == [0, 1]
    assert set(rows[1]["train"]) == {"0"} and "no SuperNode" in rows[1]["failed"]["1"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["failed_clients"] == 2 and summary["engine"] == "flower"


def test_resume_drops_node_state_written_in_a_failed_round(tmp_path):
    """SCAFFOLD keeps each client's control variate on its node. Round 1 fails after client 0
    has trained and saved its new control variate; on resume, node 0 must drop that version and
    redo round 1 from round 0's, so the run ends exactly where an uninterrupted run ends."""
    run = tmp_path / "scaffold-run"
    config = tiny_config(tmp_path / "scaffold.yaml", run, **{"algorithm.name": "scaffold"})
    state0 = tmp_path / "state0"
    with Federation(tmp_path) as fed:
        fed.add_node(0, **{"state-dir": str(state0)})
        node1 = fed.add_node(1, **{"state-dir": str(tmp_path / "state1")})
        flwr = fed.start_run(config)  # min-replies = all
        node1.wait_for("Receiving: train", count=2, timeout=120)  # round 1 begins: node 1 goes away
        node1.stop()
        flwr.popen.wait(180)
        assert "round 1 failed: 1 of 2 sampled clients replied, 2 required" in flwr.text(), flwr.text()[-3000:]
        assert (run / "checkpoints" / "LATEST").read_text().strip() == "round_00000"
        written = sorted(p.name for p in state0.rglob("*@1.safetensors"))
        assert written, "client 0 should have saved round 1's control variate before the round failed"

        fed.add_node(1, **{"state-dir": str(tmp_path / "state1")})
        out = fed.run(config, resume=True)
    assert "run finished" in out, out[-3000:]
    assert [r["round"] for r in read_rows(run)] == [0, 1]
    reference = embedded_run(config, tmp_path / "uninterrupted")
    assert_adapters_close(final_adapter(run), final_adapter(reference))
