"""The fedtune ClientApp: decode the instruction, train with our LocalTrainer, reply.

``train`` messages carry the global adapter (ArrayRecord) and the instruction (ConfigRecord);
the reply carries the trained adapter and extra tensors (ArrayRecords), the example count
(ConfigRecord) and the training metrics (MetricRecord). ``query.describe`` tells the server
which client of the federation this node is; ``query.mix`` is one gossip step of a
decentralized run (the node mixes its neighbours' adapters). Under secure aggregation the same ``train``
handler answers Flower's SecAgg+ stages (see ``secure_node``). No FL logic lives here.
Training runs in this process, or in the site's resident trainer when the node config names one.
"""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedtune.attacks import ATTACKS, attacker_ids
from fedtune.attacks.simulation import on_node
from fedtune.decentralized.gossip import mix_on_node
from fedtune.flower import faults
from fedtune.flower.node_config import NodeSettings
from fedtune.flower.secure_node import is_secure, secure_stages, train_secure
from fedtune.flower.wire import (
    TrainJob,
    decode_instruction,
    decode_mix_job,
    encode_mixed,
    encode_update,
)
from fedtune.protocol import ClientUpdate

logging.getLogger("fedtune").setLevel(logging.INFO)
app = ClientApp()


@app.query("describe")
def describe(msg: Message, context: Context) -> Message:
    node = NodeSettings.from_node_config(context.node_config)
    info = {"client-id": node.client_id, "num-partitions": int(context.node_config.get("num-partitions", 0)),
            "data-file": str(node.data_file or "")}
    return Message(RecordDict({"node": ConfigRecord(info)}), reply_to=msg)


@app.query("mix")
def mix(msg: Message, context: Context) -> Message:
    """One gossip step of a decentralized run: this client's row and mixed adapter, computed
    here from what the relay forwarded (its neighbours' adapters)."""
    return Message(encode_mixed(mix_on_node(decode_mix_job(msg.content))), reply_to=msg)


@app.train(mods=[secure_stages])
def train(msg: Message, context: Context) -> Message:
    node = NodeSettings.from_node_config(context.node_config)
    if is_secure(msg):  # SecAgg+'s collect-masked-vectors stage (secure_node)
        return train_secure(msg, lambda job: train_job(job, node, context))
    job = decode_instruction(msg.content)
    return Message(encode_update(train_job(job, node, context)), reply_to=msg)


def train_job(job: TrainJob, node: NodeSettings, context: Context) -> ClientUpdate:
    """Train ``job`` here or in the site's resident trainer, then apply the node's faults and
    (simulated attacker) tampering."""
    if node.trainer_socket is not None:  # the site's resident trainer, which keeps the model loaded
        from fedtune.flower.deploy.resident_trainer import train_remote

        update = train_remote(node.trainer_socket, job, node, flower_run_id=context.run_id)
    else:  # train in this process (loads the model unless this process already has it)
        from fedtune.flower import node_runtime

        update = node_runtime.train(job, node, flower_run_id=context.run_id)
    update = faults.after_training(node, update, job.instruction.round)
    if job.cfg.attack is not None and not ATTACKS[job.cfg.attack.method].target.omniscient:
        cfg = job.cfg  # a simulated attacker: this node tampers with its own update before it leaves
        update = on_node(cfg.attack, attacker_ids(cfg.attack, cfg.federation.num_clients, cfg.seed), cfg.seed,
                         update, job.start, job.instruction.round)
    return update
