"""Fault injection on a SuperNode, for tests and drills: with ``fault-nonfinite=true`` in its
node config, the node replies with a NaN in its adapter, which the server must reject and name."""

from __future__ import annotations

import logging
import math

from fedtune.flower.node_config import NodeSettings
from fedtune.protocol import ClientUpdate

log = logging.getLogger("fedtune")


def after_training(node: NodeSettings, update: ClientUpdate) -> ClientUpdate:
    if node.fault_nonfinite and update.adapter:
        key = next(iter(update.adapter))
        log.warning("fault injection: client %d sends a non-finite %r", node.client_id, key)
        update.adapter[key] = update.adapter[key].clone()
        update.adapter[key].view(-1)[0] = math.nan
    return update
