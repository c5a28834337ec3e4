"""Our messages in the legacy ``FitIns``/``FitRes`` layout that Flower's SecAgg+ workflow and
``secaggplus_mod`` speak (Bell et al., CCS 2020; flwr.server.workflow.SecAggPlusWorkflow).

The instruction's fields travel in ``FitIns.config`` (the same fields as on the plain wire, see
``wire.instruction_fields``, plus its config as JSON and the SecAgg+ range the node checks its
adapter against). Tensors travel as legacy ``Parameters``: one flat float32 array per tensor
group (the start adapter, then the DPO reference and instruction tensors when present), with
their layouts (key, dtype, shape, in a fixed key order) as JSON in the config. The node replies
with its adapter flattened in the start adapter's key order, so the masked vectors of all nodes
line up element by element and the unmasked sum splits back into the same tensors.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from flwr.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from fedtune.adapter_state import AdapterState
from fedtune.config import RunConfig
from fedtune.flower.wire import (
    TENSORS,
    TrainJob,
    WireError,
    instruction_fields,
    job_from_fields,
)
from fedtune.protocol import ClientInstruction, ClientUpdate

ADAPTER, REFERENCE = "adapter", "reference"
LAYOUT, CONFIG = "fedtune.layout", "fedtune.config"
RANGE, MAX_WEIGHT = "fedtune.secagg-clipping-range", "fedtune.secagg-max-weight"

Layout = list[list]  # [[key, dtype, shape], ...]


def layout_of(state: AdapterState) -> Layout:
    return [[key, str(t.dtype).removeprefix("torch."), list(t.shape)] for key, t in state.items()]


def flatten(state: AdapterState, layout: Layout) -> np.ndarray:
    """``state``'s tensors in ``layout``'s key order, as one float32 vector (exact for bf16/f16/f32)."""
    keys = {k for k, _, _ in layout}
    if keys != state.keys():
        raise WireError(f"adapter keys differ from the layout: {sorted(keys ^ state.keys())}")
    return torch.cat([state[k].detach().reshape(-1).to(torch.float32) for k, _, _ in layout]).numpy()


def unflatten(flat: np.ndarray, layout: Layout) -> AdapterState:
    """The tensors ``flatten`` packed, cast back to their dtypes."""
    sizes = [math.prod(shape) for _, _, shape in layout]
    if flat.ndim != 1 or flat.size != sum(sizes):
        raise WireError(f"flat vector of {flat.size} values for a layout of {sum(sizes)}")
    vector, state, at = torch.from_numpy(np.ascontiguousarray(flat)), {}, 0
    for (key, dtype, shape), size in zip(layout, sizes):
        state[key] = vector[at:at + size].reshape(shape).to(getattr(torch, dtype)).clone()
        at += size
    return state


# ------------------------------------------------------------------- server -> node

def encode_fitins(ins: ClientInstruction, start: AdapterState, cfg: RunConfig, resumed_from: int,
                  reference: AdapterState | None, clipping_range: float, max_weight: float) -> FitIns:
    """SecAgg+'s ``clipping_range`` and ``max_weight`` go along, for the node's range check (secure_node)."""
    groups = {ADAPTER: start, **({REFERENCE: reference} if reference is not None else {}),
              **{TENSORS + name: tensors for name, tensors in ins.tensors.items()}}
    layouts = {name: layout_of(state) for name, state in groups.items()}
    config = {**instruction_fields(ins, cfg, resumed_from), CONFIG: json.dumps(ins.config),
              LAYOUT: json.dumps(list(layouts.items())), RANGE: float(clipping_range),
              MAX_WEIGHT: float(max_weight)}
    return FitIns(ndarrays_to_parameters([flatten(groups[n], layouts[n]) for n in layouts]), config)


def decode_fitins(fitins: FitIns) -> tuple[TrainJob, Layout, tuple[float, float]]:
    """The job, the start adapter's layout (the reply's order) and (clipping_range, max_weight)."""
    try:
        layouts = dict(json.loads(fitins.config[LAYOUT]))
        config = json.loads(fitins.config[CONFIG])
        secagg = float(fitins.config[RANGE]), float(fitins.config[MAX_WEIGHT])
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"fitins.config: missing or malformed fedtune field: {e}") from None
    arrays = parameters_to_ndarrays(fitins.parameters)
    if len(arrays) != len(layouts) or ADAPTER not in layouts:
        raise WireError(f"fitins: {len(arrays)} tensor groups for layouts {list(layouts)}")
    groups = {name: unflatten(a, layout) for (name, layout), a in zip(layouts.items(), arrays)}
    tensors = {name[len(TENSORS):]: g for name, g in groups.items() if name.startswith(TENSORS)}
    job = job_from_fields(fitins.config, config, groups[ADAPTER], tensors, groups.get(REFERENCE), "fitins.config")
    return job, layouts[ADAPTER], secagg


# ------------------------------------------------------------------- node -> server

def encode_fitres(update: ClientUpdate, layout: Layout) -> FitRes:
    metrics = {k: v for k, v in update.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics["client-id"] = update.client_id
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters([flatten(update.adapter, layout)]),
                  update.num_examples, metrics)


def decode_mean(parameters: Parameters, layout: Layout) -> AdapterState:
    """The unmasked weighted mean (one flat vector) as an adapter of ``layout``."""
    (flat,) = parameters_to_ndarrays(parameters)
    return unflatten(flat.astype(np.float32), layout)
