"""Secure aggregation (Flower's SecAgg+, Bell et al. CCS 2020) on the Flower deployment engine:
the legacy FitIns/FitRes encoding, the node's range check, the config refusals, and on loopback
(3 SuperNodes) the same result as plain FedAvg, with a node that crashes in the round (after the
keys were shared) left out of the sum without breaking the round."""

from __future__ import annotations

import json

import pytest
import torch
from flower_harness import Federation, final_adapter, read_rows, tiny_config

from fedtune.config import ConfigError, load_config
from fedtune.flower.node_config import NodeConfigError
from fedtune.flower.secure_node import check_maskable
from fedtune.flower.secure_wire import (
    decode_fitins,
    decode_mean,
    encode_fitins,
    encode_fitres,
    layout_of,
)
from fedtune.protocol import ClientInstruction, ClientUpdate

SECURE = {"privacy.secure_aggregation.num_shares": 3, "privacy.secure_aggregation.reconstruction_threshold": 2}


def _adapter(scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {"b.lora_B": torch.full((2, 3), 0.5 * scale), "a.lora_A": torch.arange(6.0).reshape(3, 2) * scale / 10,
            "c.half": torch.ones(4, dtype=torch.bfloat16) * scale}


def test_fitins_and_fitres_round_trip():
    cfg = load_config(None, ["model.name=tiny-random"])
    ins = ClientInstruction(client_id=2, round=1, lr=0.01, steps=3, config={"prox_mu": 0.1},
                            tensors={"extra": {"x": torch.zeros(2)}})
    start, reference = _adapter(), _adapter(2.0)
    job, layout, (clip, weight) = decode_fitins(encode_fitins(ins, start, cfg, 0, reference, 8.0, 1000.0))
    assert (clip, weight) == (8.0, 1000.0) and job.resumed_from == 0 and job.cfg == cfg
    assert (job.instruction.client_id, job.instruction.round, job.instruction.config) == (2, 1, {"prox_mu": 0.1})
    for got, want in ((job.start, start), (job.reference, reference), (job.instruction.tensors["extra"], {"x": torch.zeros(2)})):
        assert list(got) == list(want) and all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype
                                               for k in want)
    # the reply follows the start adapter's key order whatever order the trainer returns
    trained = dict(reversed(list(_adapter(3.0).items())))
    fitres = encode_fitres(ClientUpdate(2, trained, 7, {"loss": 1.5, "examples": 4}), layout)
    assert fitres.num_examples == 7 and fitres.metrics == {"loss": 1.5, "examples": 4, "client-id": 2}
    back = decode_mean(fitres.parameters, layout_of(start))
    assert all(torch.equal(back[k], trained[k]) for k in start)


def test_node_refuses_an_adapter_secagg_would_clip():
    update = ClientUpdate(0, _adapter(), num_examples=500, metrics={})
    check_maskable(update, clipping_range=8.0, max_weight=1000.0)  # |x|·w = 1·0.5
    with pytest.raises(NodeConfigError, match="exceeds privacy.secure_aggregation.clipping_range=0.4"):
        check_maskable(update, clipping_range=0.4, max_weight=1000.0)
    update.adapter["a.lora_A"][0, 0] = float("nan")
    with pytest.raises(NodeConfigError, match="non-finite"):
        check_maskable(update, clipping_range=8.0, max_weight=1000.0)


@pytest.mark.parametrize("overrides, message", [
    (["federation.clients_per_round=1"], "at least 2 sampled clients"),
    (["aggregation.reducer=krum"], "reducer=krum needs each client's update"),
    (["aggregation.weighting=uniform"], "weighting"),
    (["algorithm.name=scaffold"], "sends tensors besides the adapter"),
    (["attack.method=sign_flip"], "simulated attack"),
    (["privacy.client_level.noise_multiplier=1"], "needs side: client and clipping: fixed"),
])
def test_secure_aggregation_refuses_what_needs_individual_updates(overrides, message):
    """At load time, as every constraint between sections."""
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["model.name=tiny-random", "federation.num_clients=3",
                           "privacy.secure_aggregation.num_shares=3", *overrides])


def test_the_embedded_engine_refuses_secure_aggregation(tmp_path):
    from fedtune.engine.runner import run_experiment

    cfg = load_config(None, ["model.name=tiny-random", "privacy.secure_aggregation.num_shares=3",
                             f"output.dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="runs on the Flower deployment engine"):
        run_experiment(cfg, progress=False)


def test_secagg_with_client_side_dp_matches_the_plain_path_and_survives_a_dropout(tmp_path):
    """DP-FedAvg with client-side clipping, on the plain wire and then under SecAgg+, over the
    same 3 SuperNodes (same seeds: the same training, the same noise), one round. Client 2
    crashes when asked to train: in the SecAgg+ round that is a dropout after the key exchange,
    which the other two nodes' shares unmask; the noise is then scaled for the 2 clients summed.
    One round, since Adam amplifies the quantization error of one round's aggregate into the next
    round's training."""
    dp = {"privacy.client_level.noise_multiplier": 0.3, "privacy.client_level.clip_norm": 0.05,
          "privacy.client_level.side": "client"}
    common = {"federation.num_clients": 3, "federation.rounds": 1, **dp}
    plain = tiny_config(tmp_path / "plain.yaml", tmp_path / "plain-run", **common)
    secure = tiny_config(tmp_path / "secure.yaml", tmp_path / "secure-run", **common, **SECURE)
    with Federation(tmp_path) as fed:
        for client in range(3):
            fed.add_node(client, resident=True, **({"fault-fail-round": 0} if client == 2 else {}))
        fed.run(plain, **{"min-replies": 2})
        out = fed.run(secure, **{"min-replies": 2})
    assert "run finished" in out and "Secure aggregation completed" in out, out[-3000:]
    a, b = final_adapter(tmp_path / "plain-run"), final_adapter(tmp_path / "secure-run")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert a.keys() == b.keys() and worst < 1e-3, worst

    rows, ref = read_rows(tmp_path / "secure-run"), read_rows(tmp_path / "plain-run")
    assert [set(r["train"]) for r in rows] == [{"-1"}]  # the server never sees one client's update
    assert set(ref[0]["train"]) == {"0", "1"}
    assert "left out of the SecAgg+ sum" in rows[0]["failed"]["2"] and "fails in round 0" in rows[0]["failed"]["2"]
    for row, plain_row in zip(rows, ref):
        assert abs(row["train_loss"] - plain_row["train_loss"]) < 1e-4
        assert row["aggregation"]["privacy"]["noise_std"] == plain_row["aggregation"]["privacy"]["noise_std"]
        assert row["privacy"] == plain_row["privacy"]
        assert row["bytes_up"] > 0 and row["bytes_down"] > plain_row["bytes_down"] // 2
    print("secagg figures:", json.dumps([{k: r[k] for k in ("round", "seconds_train", "bytes_up", "bytes_down")}
                                         for r in ref + rows]))
