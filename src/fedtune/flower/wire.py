"""Our messages on Flower's wire: a ClientInstruction plus its start adapter, and a ClientUpdate,
as a ``RecordDict`` of ArrayRecords (tensors), ConfigRecords (fields) and a MetricRecord.

Tensors travel as ArrayRecords, never pickles: each state dict packed into one flat array per
dtype, with its layout (key, dtype, shape) in a ConfigRecord beside it. The instruction
also carries the run's resolved fedtune config (JSON), so a SuperNode needs no config file of
its own. Decoding validates types and raises ``WireError`` naming the missing or bad field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedtune.adapter_state import AdapterState
from fedtune.config import RunConfig, from_dict
from fedtune.decentralized.gossip import Mixed, MixJob
from fedtune.protocol import ClientInstruction, ClientUpdate

ADAPTER = "adapter"
REFERENCE = "reference"  # the DPO reference adapter (train.reference: start)
INSTRUCTION = "instruction"
CONFIG = "config"
UPDATE = "update"
METRICS = "metrics"
LAYOUT = ".layout"  # suffix of the ConfigRecord describing a packed ArrayRecord
TENSORS = "tensors."  # prefix of named extra tensor groups, e.g. "tensors.server_control"


class WireError(ValueError):
    """A message whose content does not have the expected records or fields."""


@dataclass
class TrainJob:
    """A decoded train message: the run config, the instruction and the adapter to start from."""

    cfg: RunConfig
    instruction: ClientInstruction
    start: AdapterState
    resumed_from: int = -1  # the server's last checkpointed round when this Flower run started
    reference: AdapterState | None = None  # the DPO reference adapter; None = the base model


def _put_tensors(content: RecordDict, name: str, state: AdapterState) -> None:
    """Store ``state`` as one flat byte array per dtype (ArrayRecord ``name``) plus its layout
    (ConfigRecord ``name.layout``: key, dtype, shape per tensor, in order).

    Why packed: Flower moves every Array as its own object with its own request on each hop
    (SuperLink -> SuperNode -> ClientApp and back), so an adapter of 420 LoRA tensors costs
    hundreds of round trips per message; one array per dtype costs a few.
    """
    groups: dict[str, list[torch.Tensor]] = {}
    layout = []
    for key, tensor in state.items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        groups.setdefault(dtype, []).append(tensor.detach().reshape(-1))
        layout.append([key, dtype, list(tensor.shape)])
    # as raw bytes: numpy, under Flower's Array, has no bfloat16
    content[name] = ArrayRecord({dtype: torch.cat(parts).view(torch.uint8) for dtype, parts in groups.items()})
    content[name + LAYOUT] = ConfigRecord({"layout": json.dumps(layout)})


def _get_tensors(content: RecordDict, name: str) -> AdapterState:
    """The state ``_put_tensors`` stored as ``name``; ``WireError`` if arrays and layout disagree."""
    where = name + LAYOUT
    flat = {}
    for dtype, data in _record(content, name, ArrayRecord).to_torch_state_dict().items():
        kind = getattr(torch, dtype, None)
        if not isinstance(kind, torch.dtype) or data.dtype != torch.uint8:
            raise WireError(f"{name}: array {dtype!r} is not the bytes of a torch dtype")
        flat[dtype] = data.view(kind)
    try:
        layout = json.loads(_field(_record(content, where, ConfigRecord), "layout", str, where))
    except json.JSONDecodeError as e:
        raise WireError(f"{where}: layout is not JSON: {e}") from None
    used = dict.fromkeys(flat, 0)
    state = {}
    for key, dtype, shape in layout:
        size = math.prod(shape)
        if dtype not in flat or used[dtype] + size > flat[dtype].numel():
            raise WireError(f"{name}: tensor {key!r} ({dtype}, {shape}) is not in the packed arrays")
        # a copy, not a view: each tensor owns its memory (pickling a view would copy the whole buffer)
        state[key] = flat[dtype][used[dtype]:used[dtype] + size].view(shape).clone()
        used[dtype] += size
    extra = {dtype: flat[dtype].numel() - n for dtype, n in used.items() if flat[dtype].numel() != n}
    if extra:
        raise WireError(f"{name}: packed arrays hold values no tensor of the layout uses: {extra}")
    return state


def _tensors(content: RecordDict) -> dict[str, AdapterState]:
    return {name[len(TENSORS):]: _get_tensors(content, name) for name in content.array_records
            if name.startswith(TENSORS)}


def array_bytes(content: RecordDict) -> int:
    """Bytes of all ArrayRecords in ``content`` as Flower counts them (``ArrayRecord.count_bytes``)."""
    return sum(rec.count_bytes() for rec in content.array_records.values())


def _field(record, key: str, kind: type | tuple[type, ...], where: str):
    if key not in record:
        raise WireError(f"{where}: missing field {key!r}")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise WireError(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def _record(content: RecordDict, name: str, kind: type):
    store = {ArrayRecord: content.array_records, ConfigRecord: content.config_records,
             MetricRecord: content.metric_records}[kind]
    if name not in store:
        raise WireError(f"message has no {kind.__name__} {name!r}")
    return store[name]


# ------------------------------------------------------------------- server -> client

def encode_instruction(ins: ClientInstruction, start: AdapterState, cfg: RunConfig,
                       resumed_from: int = -1, reference: AdapterState | None = None) -> RecordDict:
    content = RecordDict()
    _put_tensors(content, ADAPTER, start)
    if reference is not None:
        _put_tensors(content, REFERENCE, reference)
    content[INSTRUCTION] = ConfigRecord(instruction_fields(ins, cfg, resumed_from))
    content[CONFIG] = ConfigRecord(dict(ins.config))
    for name, tensors in ins.tensors.items():
        _put_tensors(content, TENSORS + name, tensors)
    return content


def instruction_fields(ins: ClientInstruction, cfg: RunConfig, resumed_from: int) -> dict:
    """The instruction's scalar fields and the run config (JSON), as one flat mapping."""
    return {"client-id": ins.client_id, "round": ins.round, "lr": float(ins.lr), "steps": ins.steps,
            "start-from": ins.start_from, "resumed-from": resumed_from,
            "run-config": json.dumps(cfg.model_dump(mode="json"))}


def job_from_fields(rec, config: dict, start: AdapterState, tensors: dict[str, AdapterState],
                    reference: AdapterState | None, where: str = "instruction") -> TrainJob:
    """The TrainJob of ``instruction_fields`` output ``rec`` (validated) and the decoded tensors."""
    try:
        cfg = from_dict(json.loads(_field(rec, "run-config", str, where)), "run-config")
    except json.JSONDecodeError as e:
        raise WireError(f"{where}: run-config is not JSON: {e}") from None
    ins = ClientInstruction(
        client_id=_field(rec, "client-id", int, where), round=_field(rec, "round", int, where),
        lr=float(_field(rec, "lr", (int, float), where)), steps=_field(rec, "steps", int, where),
        start_from=_field(rec, "start-from", str, where), config=config, tensors=tensors,
    )
    return TrainJob(cfg, ins, start, _field(rec, "resumed-from", int, where), reference)


def decode_instruction(content: RecordDict) -> TrainJob:
    reference = _get_tensors(content, REFERENCE) if REFERENCE in content.array_records else None
    return job_from_fields(_record(content, INSTRUCTION, ConfigRecord), dict(_record(content, CONFIG, ConfigRecord)),
                           _get_tensors(content, ADAPTER), _tensors(content), reference)


# ------------------------------------------------------------------- client -> server

def encode_update(update: ClientUpdate) -> RecordDict:
    content = RecordDict()
    _put_tensors(content, ADAPTER, update.adapter)
    content[UPDATE] = ConfigRecord({"client-id": update.client_id, "num-examples": update.num_examples})
    numeric = {k: v for k, v in update.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    content[METRICS] = MetricRecord(numeric)
    for name, tensors in update.tensors.items():
        _put_tensors(content, TENSORS + name, tensors)
    return content


def decode_update(content: RecordDict) -> ClientUpdate:
    rec = _record(content, UPDATE, ConfigRecord)
    metrics = dict(_record(content, METRICS, MetricRecord))
    for key in ("loss", "examples"):
        _field(metrics, key, (int, float), "metrics")
    return ClientUpdate(
        client_id=_field(rec, "client-id", int, "update"),
        adapter=_get_tensors(content, ADAPTER),
        num_examples=_field(rec, "num-examples", int, "update"),
        metrics=metrics, tensors=_tensors(content),
    )


# ------------------------------------------------------------ gossip (decentralized topology)

MIX = "mix"
MEMBER = "member."  # prefix of the received adapters, by position in the row
START = "start"


def encode_mix_job(job: MixJob) -> RecordDict:
    """What the relay forwards to a client for one gossip step: its members' adapters (its own
    included: a node keeps no adapter between messages), their sizes, the start, the row if fixed."""
    content = RecordDict()
    for position, adapter in enumerate(job.adapters):
        _put_tensors(content, f"{MEMBER}{position}", adapter)
    if job.start is not None:
        _put_tensors(content, START, job.start)
    for position, adapter in enumerate(job.starts or []):
        _put_tensors(content, f"{START}.{position}", adapter)
    fields = {"client-id": job.client_id, "members": job.members, "sizes": job.sizes, "graph": job.graph,
              "alpha": float(job.alpha)}
    if job.row is not None:
        fields["row"] = [float(x) for x in job.row]
    content[MIX] = ConfigRecord(fields)
    return content


def decode_mix_job(content: RecordDict) -> MixJob:
    rec = _record(content, MIX, ConfigRecord)
    members, sizes = _field(rec, "members", list, MIX), _field(rec, "sizes", list, MIX)
    row = _field(rec, "row", list, MIX) if "row" in rec else None
    if len(sizes) != len(members) or (row is not None and len(row) != len(members)):
        raise WireError(f"{MIX}: members, sizes and row differ in length")
    return MixJob(client_id=_field(rec, "client-id", int, MIX), members=members,
                  adapters=[_get_tensors(content, f"{MEMBER}{p}") for p in range(len(members))], sizes=sizes,
                  graph=_field(rec, "graph", str, MIX), alpha=_field(rec, "alpha", float, MIX),
                  start=_get_tensors(content, START) if START in content.array_records else None, row=row,
                  starts=[_get_tensors(content, f"{START}.{p}") for p in range(len(members))]
                  if f"{START}.0" in content.array_records else None)


def encode_mixed(mixed: Mixed) -> RecordDict:
    content = RecordDict()
    _put_tensors(content, ADAPTER, mixed.adapter)
    content[MIX] = ConfigRecord({"row": [float(x) for x in mixed.row]})
    return content


def decode_mixed(content: RecordDict) -> Mixed:
    return Mixed(_get_tensors(content, ADAPTER), _field(_record(content, MIX, ConfigRecord), "row", list, MIX))
