"""Our messages on Flower's wire: a ClientInstruction plus its start adapter, and a ClientUpdate,
as a ``RecordDict`` of ArrayRecords (tensors), ConfigRecords (fields) and a MetricRecord.

Tensors travel as ArrayRecords built from torch state dicts, never pickles. The instruction
also carries the run's resolved fedtune config (JSON), so a SuperNode needs no config file of
its own. Decoding validates types and raises ``WireError`` naming the missing or bad field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedtune.adapter_state import AdapterState
from fedtune.config import RunConfig, from_dict
from fedtune.server.strategy import ClientInstruction, ClientUpdate

ADAPTER = "adapter"
REFERENCE = "reference"  # the DPO reference adapter (train.reference: start)
INSTRUCTION = "instruction"
CONFIG = "config"
UPDATE = "update"
METRICS = "metrics"
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


def _arrays(state: AdapterState) -> ArrayRecord:
    return ArrayRecord({k: v.detach().contiguous() for k, v in state.items()})


def _tensors(content: RecordDict) -> dict[str, AdapterState]:
    return {name[len(TENSORS):]: rec.to_torch_state_dict() for name, rec in content.array_records.items()
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
    content[ADAPTER] = _arrays(start)
    if reference is not None:
        content[REFERENCE] = _arrays(reference)
    content[INSTRUCTION] = ConfigRecord({
        "client-id": ins.client_id, "round": ins.round, "lr": float(ins.lr), "steps": ins.steps,
        "start-from": ins.start_from, "resumed-from": resumed_from, "run-config": json.dumps(cfg.model_dump(mode="json")),
    })
    content[CONFIG] = ConfigRecord(dict(ins.config))
    for name, tensors in ins.tensors.items():
        content[TENSORS + name] = _arrays(tensors)
    return content


def decode_instruction(content: RecordDict) -> TrainJob:
    rec = _record(content, INSTRUCTION, ConfigRecord)
    where = "instruction"
    try:
        cfg = from_dict(json.loads(_field(rec, "run-config", str, where)), "run-config")
    except json.JSONDecodeError as e:
        raise WireError(f"{where}: run-config is not JSON: {e}") from None
    ins = ClientInstruction(
        client_id=_field(rec, "client-id", int, where), round=_field(rec, "round", int, where),
        lr=float(_field(rec, "lr", (int, float), where)), steps=_field(rec, "steps", int, where),
        start_from=_field(rec, "start-from", str, where),
        config=dict(_record(content, CONFIG, ConfigRecord)), tensors=_tensors(content),
    )
    start = _record(content, ADAPTER, ArrayRecord).to_torch_state_dict()
    reference = content.array_records.get(REFERENCE)
    return TrainJob(cfg, ins, start, _field(rec, "resumed-from", int, where),
                    reference.to_torch_state_dict() if reference is not None else None)


# ------------------------------------------------------------------- client -> server

def encode_update(update: ClientUpdate) -> RecordDict:
    content = RecordDict()
    content[ADAPTER] = _arrays(update.adapter)
    content[UPDATE] = ConfigRecord({"client-id": update.client_id, "num-examples": update.num_examples})
    numeric = {k: v for k, v in update.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    content[METRICS] = MetricRecord(numeric)
    for name, tensors in update.tensors.items():
        content[TENSORS + name] = _arrays(tensors)
    return content


def decode_update(content: RecordDict) -> ClientUpdate:
    rec = _record(content, UPDATE, ConfigRecord)
    metrics = dict(_record(content, METRICS, MetricRecord))
    for key in ("loss", "examples"):
        _field(metrics, key, (int, float), "metrics")
    return ClientUpdate(
        client_id=_field(rec, "client-id", int, "update"),
        adapter=_record(content, ADAPTER, ArrayRecord).to_torch_state_dict(),
        num_examples=_field(rec, "num-examples", int, "update"),
        metrics=metrics, tensors=_tensors(content),
    )
