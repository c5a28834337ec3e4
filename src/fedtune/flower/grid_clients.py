"""The Flower engine's clients: a ``ClientExecutor`` that sends each sampled client's
instruction to its SuperNode as a Message and turns the replies into ClientUpdates.

A client without a node, a node that goes offline or times out, or a ClientApp error is a
*failed* client (named with its node); a reply that cannot be decoded, or that answers for
another client, is a *rejected* update. Bytes are counted from the ArrayRecords sent and received.
Under a decentralized topology the server also relays each gossip step (``run_mix_jobs``): it
forwards to every client's node what its neighbours sent, and the node mixes; the server mixes
nothing.
"""

from __future__ import annotations

import logging

from flwr.app import Message
from flwr.serverapp import Grid

from fedtune.adapter_state import AdapterState
from fedtune.config import RunConfig
from fedtune.decentralized.gossip import Mixed, MixJob
from fedtune.engine.rounds import ClientReplies
from fedtune.flower.exchange import exchange
from fedtune.flower.node_directory import NodeDirectory
from fedtune.flower.wire import (
    WireError,
    array_bytes,
    decode_mixed,
    decode_update,
    encode_instruction,
    encode_mix_job,
)
from fedtune.protocol import ClientInstruction

TRAIN = "train"
MIX = "query.mix"

log = logging.getLogger("fedtune")


class FlowerClients:
    runs_node_attacks = True  # a simulated attacker that needs only its own update attacks on its node
    def __init__(self, grid: Grid, cfg: RunConfig, round_timeout: float | None = None, node_wait: float = 120.0):
        self.grid, self.cfg, self.round_timeout, self.node_wait = grid, cfg, round_timeout, node_wait
        self.directory = NodeDirectory(grid, cfg.federation)
        self.resumed_from = -1
        self.reference: AdapterState | None = None  # sent with every instruction when set (DPO reference: start)

    def use_config(self, cfg: RunConfig) -> None:
        """Serve ``cfg`` from now on (the run's config once its data fixed the client count)."""
        self.cfg = cfg
        self.directory.federation = cfg.federation

    def announce(self) -> None:
        """Ask the connected nodes who they are now; their answers are read at ``begin``."""
        self.directory.announce()

    def begin(self, first_round: int) -> None:
        """Before the first round of this Flower run: wait for the nodes to connect."""
        self.resumed_from = first_round - 1
        self.directory.wait(self.node_wait)

    def execute(self, round: int, work: list[tuple[ClientInstruction, AdapterState]]) -> ClientReplies:
        replies = ClientReplies()
        serving = self.directory.refresh()
        sent = []
        for ins, start in work:
            node = serving.get(ins.client_id)
            if node is None:
                replies.failed[str(ins.client_id)] = "no SuperNode is connected for this client"
                continue
            content = encode_instruction(ins, start, self.cfg, self.resumed_from, self.reference)
            replies.bytes_down += array_bytes(content)
            replies.senders[ins.client_id] = f"node {node}"
            sent.append((ins, node, Message(content, dst_node_id=node, message_type=TRAIN, group_id=str(round))))
        answers = exchange(self.grid, [m for _, _, m in sent], self.round_timeout)
        for (ins, node, _), reply in zip(sent, answers):
            cid = str(ins.client_id)
            if reply is None:
                replies.failed[cid] = f"node {node}: no reply within {self.round_timeout:.0f} s"
            elif reply.has_error():
                replies.failed[cid] = f"node {node}: {reply.error.reason} (Flower error code {reply.error.code})"
            else:
                replies.bytes_up += array_bytes(reply.content)
                try:
                    update = decode_update(reply.content)
                except (WireError, KeyError, TypeError, ValueError) as e:
                    replies.rejected[cid] = f"node {node}: malformed reply: {e}"
                    continue
                if update.client_id != ins.client_id:
                    replies.rejected[cid] = f"node {node}: replied for client {update.client_id}"
                    continue
                replies.updates.append((ins, update))
        return replies

    def run_mix_jobs(self, round: int, jobs: list[MixJob]) -> list[Mixed | None]:
        """Relay one gossip step: each job to its client's node, which mixes (``query.mix``);
        None for a client whose node did not answer with a usable adapter (named in the log)."""
        serving = self.directory.refresh()
        sent = [(job, serving.get(job.client_id)) for job in jobs]
        messages = [Message(encode_mix_job(job), dst_node_id=node, message_type=MIX, group_id=f"{round}-mix")
                    for job, node in sent if node is not None]
        answers = iter(exchange(self.grid, messages, self.round_timeout))
        results = []
        for job, node in sent:
            reply = next(answers) if node is not None else None
            try:
                if reply is None or reply.has_error():
                    raise WireError("no SuperNode connected" if node is None else
                                    f"node {node}: {reply.error.reason if reply else 'no reply in time'}")
                results.append(decode_mixed(reply.content))
            except (WireError, KeyError, TypeError, ValueError) as e:
                log.warning("round %d: client %d did not mix: %s", round, job.client_id, e)
                results.append(None)
        return results
