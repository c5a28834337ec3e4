"""Fault injection on a SuperNode, for tests and drills, from its node config:

- ``fault-nonfinite=true``: the node replies with a NaN in its adapter, which the server must
  reject and name;
- ``fault-fail-round=N``: the node's ClientApp fails when asked to train round N (a crash in the
  middle of that round; under secure aggregation, a dropout after the keys were shared).
"""

from __future__ import annotations

import logging
import math

from fedtune.flower.node_config import NodeSettings
from fedtune.protocol import ClientUpdate

log = logging.getLogger("fedtune")


class InjectedFault(RuntimeError):
    """The failure ``fault-fail-round`` asked for."""


def after_training(node: NodeSettings, update: ClientUpdate, round: int) -> ClientUpdate:
    if node.fault_fail_round == round:
        raise InjectedFault(f"fault injection: client {node.client_id} fails in round {round}")
    if node.fault_nonfinite and update.adapter:
        key = next(iter(update.adapter))
        log.warning("fault injection: client %d sends a non-finite %r", node.client_id, key)
        update.adapter[key] = update.adapter[key].clone()
        update.adapter[key].view(-1)[0] = math.nan
    return update
