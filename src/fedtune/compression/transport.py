"""Compressed updates between a client and the server (and, optionally, the global adapter on
its way down).

Client (a training hook, so both engines run the same code): at the end of local training the
delta y − x (plus, for error-feedback codecs, the residual the client kept) is encoded; the
payload goes in the update's tensors (``compressed``) and the adapter itself stays home, so what
the engine counts and the Flower wire carries is the payload. The residual — what was not sent —
is per-client state in the client's store (rolled back with the run, so ``--resume`` is exact).

Server (``decompress``, called by the round loop before any check): y = x + decode(payload); a
payload that cannot be decoded rejects the update with the reason. Randomness (int8's stochastic
rounding) is drawn from (run seed, round, client): the same on every engine and after a resume.
"""

from __future__ import annotations

import json

import torch

from fedtune.adapter_state import AdapterState, clone
from fedtune.client.batching import round_rng
from fedtune.client.hooks import TrainingHook, register_hook
from fedtune.compression.registry import CODECS
from fedtune.protocol import ClientInstruction, ClientUpdate

CODEC = "compress"  # instruction config: the codec's parameters (JSON) and the run seed
COMPRESSED = "compressed"  # update tensors: the payload
DOWNLOAD = "download"  # instruction config: the download codec (JSON); instruction tensors: the payload
RESIDUAL = "compression_residual"  # ClientStateStore name: error feedback's unsent rest


def instruction_config(params, seed: int) -> dict:
    """What a client needs to compress its update; {} for ``none``."""
    if params.name == "none":
        return {}
    return {CODEC: json.dumps({"codec": params.model_dump(mode="json"), "seed": seed})}


def _codec(spec: str):
    cfg = json.loads(spec)
    params = CODECS.config(cfg["codec"]["name"], **{k: v for k, v in cfg["codec"].items() if k != "name"})
    return CODECS[params.name].target(params), cfg["seed"]


def _generator(seed: int, ins: ClientInstruction, purpose: str = "compress") -> torch.Generator:
    return torch.Generator().manual_seed(round_rng(seed, ins.round, ins.client_id, purpose).getrandbits(63))


class Compressing(TrainingHook):
    runs_last = True  # compresses the update the other hooks (e.g. DP's client-side clipping) finished

    def __init__(self, instruction: ClientInstruction, store):
        self.instruction, self.store = instruction, store
        self.codec, self.seed = _codec(instruction.config[CODEC])
        self.start: dict[str, torch.Tensor] = {}

    def on_round_start(self, params, instruction):
        self.start = {k: t.float() for k, t in clone(params).items()}  # on the CPU, as update.adapter

    def on_round_end(self, params, update: ClientUpdate) -> None:
        delta = {k: update.adapter[k].float() - x for k, x in self.start.items()}  # the keys it trained
        cid = self.instruction.client_id
        residual = (self.store.get(cid, RESIDUAL) if self.codec.stateful else None) or {}
        delta = {k: t + residual[k] if k in residual else t for k, t in delta.items()}
        payload = self.codec.encode(delta, _generator(self.seed, self.instruction))
        if self.codec.stateful:  # a layer not trained this round (selective layers) keeps its residual
            sent = self.codec.decode(payload, delta)
            self.store.put(cid, RESIDUAL, {**residual, **{k: t - sent[k] for k, t in delta.items()}})
        update.tensors[COMPRESSED] = payload
        update.adapter = {}


@register_hook
def _compressing(instruction, store):
    return Compressing(instruction, store) if CODEC in instruction.config else None


def compress_download(params, seed: int, instruction: ClientInstruction, start: AdapterState) -> AdapterState:
    """Server side: put the encoded start adapter in the instruction's tensors (what travels) and
    return the empty start that goes with it; ``start`` unchanged for ``none``."""
    if params.name == "none":
        return start
    codec = CODECS[params.name].target(params)
    instruction.config[DOWNLOAD] = json.dumps({"codec": params.model_dump(mode="json"), "seed": seed})
    instruction.tensors[DOWNLOAD] = codec.encode({k: t.float() for k, t in start.items()},
                                                 _generator(seed, instruction, "download"))
    return {}


def received_start(instruction: ClientInstruction, start: AdapterState) -> AdapterState:
    """Client side: the start adapter as the client received it — decoded from the download
    payload (float32; lossy for int8 and half precision), or ``start`` itself without one."""
    if DOWNLOAD not in instruction.config:
        return start
    codec, _ = _codec(instruction.config[DOWNLOAD])
    payload = instruction.tensors.pop(DOWNLOAD)
    return codec.decode(payload, {k: t for k, t in payload.items() if "/" not in k})  # dense codecs keep the keys


def decompress(instruction: ClientInstruction, update: ClientUpdate, start: AdapterState) -> str | None:
    """Rebuild ``update.adapter`` = start + decode(payload) in place, over ``start``'s keys (the
    ones the client sent); a one-line reason if the payload is unusable (the update is then
    rejected), None otherwise."""
    payload = update.tensors.pop(COMPRESSED, None)
    if payload is None:
        return "compression is on but the update carries no compressed payload"
    codec, _ = _codec(instruction.config[CODEC])
    try:
        delta = codec.decode(payload, start)
    except (KeyError, IndexError, RuntimeError) as e:
        return f"compressed payload does not decode: {type(e).__name__}: {e}"
    update.adapter = {k: (x.float() + delta[k]).to(x.dtype) for k, x in start.items()}
    return None
