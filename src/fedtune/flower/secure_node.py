"""The node's side of Flower's SecAgg+ (Bell et al., CCS 2020; ``flwr.client.mod.secaggplus_mod``).

The fedtune ClientApp serves plain and secure rounds with one ``train`` handler: ``secure_stages``
hands a message to ``secaggplus_mod`` only when it carries SecAgg+'s stage config, so the plain
wire is untouched and one FAB serves both (secure aggregation is a server-side config choice).
The mod answers the setup, share-keys and unmask stages itself and calls the handler only at
collect-masked-vectors, with the instruction in the legacy ``fitins.*`` records; the handler
trains as on the plain wire and replies in the legacy ``fitres.*`` layout, which the mod then
weights, quantizes and masks (and strips of the plain adapter) before it leaves the node.
"""

from __future__ import annotations

from collections.abc import Callable

import flwr.compat.common.recorddict_compat as compat
import torch
from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from fedtune.flower.node_config import NodeConfigError
from fedtune.flower.secure_wire import decode_fitins, encode_fitres
from fedtune.flower.wire import TrainJob
from fedtune.protocol import ClientUpdate

FITINS = "fitins.config"


def secure_stages(msg: Message, context: Context, call_next) -> Message:
    """A mod: SecAgg+ stage messages go through ``secaggplus_mod``, all others straight on."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def is_secure(msg: Message) -> bool:
    """Whether ``msg`` is SecAgg+'s collect-masked-vectors stage (a legacy FitIns)."""
    return FITINS in msg.content.config_records


def train_secure(msg: Message, train: Callable[[TrainJob], ClientUpdate]) -> Message:
    """Decode the FitIns, ``train`` the job, check the adapter can be masked, reply as FitRes."""
    job, layout, (clipping_range, max_weight) = decode_fitins(compat.recorddict_to_fitins(msg.content, True))
    update = train(job)
    if job.cfg.privacy.client_level is not None:
        # DP-FedAvg's equal weights: every node reports max_weight, so SecAgg+ scales by exactly 1
        # (a weight of 1 example would be 1/max_weight, and the quantization error 1000x larger)
        update.num_examples = int(max_weight)
    check_maskable(update, clipping_range, max_weight)
    return Message(compat.fitres_to_recorddict(encode_fitres(update, layout), False), reply_to=msg)


def check_maskable(update: ClientUpdate, clipping_range: float, max_weight: float) -> None:
    """SecAgg+ multiplies the adapter by num_examples / max_weight and clips it to
    ±clipping_range before quantizing; a clipped value would silently bias the sum, and a
    non-finite one would turn into garbage. Refuse both here, so the node drops out instead."""
    weight = update.num_examples / max_weight
    worst = max(float(t.abs().max()) for t in update.adapter.values())
    if not all(bool(torch.isfinite(t).all()) for t in update.adapter.values()):
        raise NodeConfigError("secure aggregation: the trained adapter has non-finite values")
    if worst * weight > clipping_range:
        raise NodeConfigError(
            f"secure aggregation: |adapter value| {worst:.4g} x weight {update.num_examples}/{max_weight:g} "
            f"exceeds privacy.secure_aggregation.clipping_range={clipping_range:g}; raise clipping_range")
