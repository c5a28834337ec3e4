"""What crosses between the server and a client in a round, in bytes (the metrics rows' counts)."""

from __future__ import annotations

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.protocol import ClientInstruction, ClientUpdate


def bytes_down(ins: ClientInstruction, start: AdapterState) -> int:
    """The start adapter and the instruction's tensors (e.g. SCAFFOLD's control variate)."""
    return ops.num_bytes(start) + sum(ops.num_bytes(t) for t in ins.tensors.values())


def bytes_up(update: ClientUpdate) -> int:
    """The trained adapter and the update's tensors."""
    return ops.num_bytes(update.adapter) + sum(ops.num_bytes(t) for t in update.tensors.values())
