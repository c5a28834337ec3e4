"""Compressed updates: each codec's error against its bound, top-k's error feedback conserving
the sum over rounds, the payload on the Flower wire, and real runs that send fewer bytes and
resume exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_in_round, metrics_rows, run_config
from safetensors.torch import load_file

from fedtune.client.state_store import ClientStateStore
from fedtune.compression import CODECS
from fedtune.compression.transport import (
    COMPRESSED,
    Compressing,
    decompress,
    instruction_config,
)
from fedtune.config import ConfigError, load_config
from fedtune.engine.runner import run_experiment
from fedtune.protocol import ClientInstruction, ClientUpdate


def _delta(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.lora_A": torch.randn(8, 16, generator=g), "b.lora_B": 0.01 * torch.randn(16, 8, generator=g)}


def _codec(name: str, **params):
    cfg = CODECS.config(name, **params)
    return CODECS[name].target(cfg)


def test_int8_is_unbiased_and_within_one_step_of_its_scale():
    codec, delta = _codec("int8"), _delta()
    decoded = [codec.decode(codec.encode(delta, torch.Generator().manual_seed(s)), delta) for s in range(400)]
    for k, t in delta.items():
        step = float(t.abs().max()) / 127
        assert all(float((d[k] - t).abs().max()) < step for d in decoded)
        mean = torch.stack([d[k] for d in decoded]).mean(0)
        assert float((mean - t).abs().max()) < 0.15 * step  # E[q·s] = x
    assert codec.encode(delta, torch.Generator())["a.lora_A"].dtype == torch.int8


@pytest.mark.parametrize("name,rel", [("fp16", 1e-3), ("bf16", 8e-3)])
def test_half_precision_round_trips_to_its_mantissa(name, rel):
    codec, delta = _codec(name), _delta()
    back = codec.decode(codec.encode(delta, torch.Generator()), delta)
    for k, t in delta.items():
        assert float(((back[k] - t).abs() / t.abs().clamp(min=1e-6)).max()) <= rel


def test_topk_sends_the_largest_entries_and_error_feedback_conserves_the_sum(tmp_path):
    """Ten rounds of the same delta through the real client hook: what reached the server plus
    the residual left on the client equals ten deltas, to float rounding."""
    params = CODECS.config("topk", ratio=0.05)
    store = ClientStateStore(tmp_path / "store")
    delta = _delta()
    start = {k: torch.zeros_like(t) for k, t in delta.items()}
    received = {k: torch.zeros_like(t) for k, t in delta.items()}
    for r in range(10):
        store.round = r
        ins = ClientInstruction(client_id=3, round=r, lr=0.1, steps=1, config=instruction_config(params, seed=0))
        hook = Compressing(ins, store)
        hook.on_round_start({k: torch.nn.Parameter(t.clone()) for k, t in start.items()}, ins)
        update = ClientUpdate(3, {k: start[k] + t for k, t in delta.items()}, 10)
        hook.on_round_end({}, update)
        assert update.adapter == {} and len(update.tensors[COMPRESSED]["a.lora_A"]) == 7  # ceil(0.05 · 128)
        if r == 0:
            top = delta["a.lora_A"].reshape(-1).abs().topk(7).indices.sort().values
            assert torch.equal(update.tensors[COMPRESSED]["a.lora_A/index"].long(), top)
        assert decompress(ins, update, start) is None
        received = {k: received[k] + update.adapter[k] for k in received}
        store.commit(r)
    residual = store.get(3, "compression_residual")
    for k, t in delta.items():
        torch.testing.assert_close(received[k] + residual[k], 10 * t, rtol=1e-5, atol=1e-5)


def test_a_compressed_update_crosses_the_flower_wire_and_a_broken_one_is_rejected():
    from fedtune.flower.wire import decode_update, encode_update

    params = CODECS.config("topk", ratio=0.1)
    ins = ClientInstruction(client_id=0, round=0, lr=0.1, steps=1, config=instruction_config(params, seed=0))
    delta, start = _delta(), {k: torch.zeros_like(t) for k, t in _delta().items()}
    payload = CODECS["topk"].target(params).encode(delta, torch.Generator())
    back = decode_update(encode_update(ClientUpdate(0, {}, 5, {"loss": 1.0, "examples": 2}, {COMPRESSED: payload})))
    assert all(torch.equal(back.tensors[COMPRESSED][k], payload[k]) for k in payload)
    assert decompress(ins, back, start) is None and back.adapter.keys() == start.keys()
    broken = ClientUpdate(0, {}, 5, {}, {COMPRESSED: {"a.lora_A": payload["a.lora_A"]}})
    assert "does not decode" in decompress(ins, broken, start)

    # and the download: the instruction carries the int8 global adapter, the node decodes it
    from fedtune.compression.transport import compress_download, received_start
    from fedtune.flower.wire import decode_instruction, encode_instruction

    cfg = load_config(None, ["model.name=tiny-random", "communication.download=int8"])
    down = ClientInstruction(client_id=0, round=0, lr=0.1, steps=1)
    weights = {k: t + 1.0 for k, t in delta.items()}
    job = decode_instruction(encode_instruction(down, compress_download(cfg.communication.download, 0, down, weights), cfg))
    got = received_start(job.instruction, job.start)
    assert got.keys() == weights.keys() and all(float((got[k] - w).abs().max()) <= float(w.abs().max()) / 127
                                                for k, w in weights.items())


def _config(tmp_path, out, **extra):
    return run_config(tmp_path, out, **{"federation.rounds": 3, "eval.every": 0, **extra})


def _bytes_up(cfg) -> int:
    return sum(r["bytes_up"] for r in metrics_rows(cfg))


def test_compressed_runs_send_fewer_bytes_and_topk_resumes_bit_identical(tmp_path, loaded):
    plain = _config(tmp_path, "none")
    run_experiment(plain, loaded=loaded, progress=False)
    for name, ratio in (("fp16", 0.5), ("int8", 0.25)):
        cfg = _config(tmp_path, name, **{"communication.compress": name})
        run_experiment(cfg, loaded=loaded, progress=False)
        assert _bytes_up(cfg) == pytest.approx(ratio * _bytes_up(plain), rel=0.01)
    topk = {"communication.compress": {"name": "topk", "ratio": 0.1}}
    whole = _config(tmp_path, "topk", **topk)
    run_experiment(whole, loaded=loaded, progress=False)
    assert _bytes_up(whole) < 0.25 * _bytes_up(plain)  # 10% of the values, at 8 bytes each
    cut = _config(tmp_path, "topk-cut", **topk)
    interrupt_in_round(cut, loaded, stop_round=2)  # the residuals written in round 2 are rolled back
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a) and max(float(t.abs().max()) for t in a.values()) > 0


@pytest.mark.parametrize("overrides,message", [
    (["communication.compress=int8", "attack={method: sign_flip, clients: [0]}"], "simulated attacks craft plain updates"),
    (["communication.compress=int8", "algorithm=local"], "sends no adapters to compress"),
    (["communication.download=int8", "privacy.secure_aggregation.num_shares=3"], "SecAgg\\+ carries the plain adapter"),
    (["communication.download={name: topk}"], "top-k sparsifies deltas"),
    (["communication.compress={name: topk, ratio: 2}"], "ratio"),
])
def test_compression_refuses_what_needs_plain_updates(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_a_compressed_download_is_what_the_clients_start_from(tmp_path, loaded):
    """int8 both ways: the bytes down are a quarter, and the run trains (clients start from the
    decoded global adapter; the server adds their deltas to its exact one)."""
    plain = _config(tmp_path, "plain")
    run_experiment(plain, loaded=loaded, progress=False)
    cfg = _config(tmp_path, "both", **{"communication.compress": "int8", "communication.download": "int8"})
    run_experiment(cfg, loaded=loaded, progress=False)
    rows, ref = metrics_rows(cfg), metrics_rows(plain)
    assert sum(r["bytes_down"] for r in rows) == pytest.approx(0.25 * sum(r["bytes_down"] for r in ref), rel=0.01)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] + 0.5 and rows[-1]["train_loss"] == pytest.approx(
        ref[-1]["train_loss"], rel=0.05)  # quantization noise, not a different run

    start = {"w": torch.randn(4, 8, generator=torch.Generator().manual_seed(1))}
    ins = ClientInstruction(client_id=0, round=0, lr=0.1, steps=1)
    from fedtune.compression.transport import compress_download, received_start

    sent = compress_download(CODECS.config("int8"), 0, ins, start)
    got = received_start(ins, sent)
    assert sent == {} and float((got["w"] - start["w"]).abs().max()) < float(start["w"].abs().max()) / 127
