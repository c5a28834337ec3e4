"""The Flower engine's clients: a ``ClientExecutor`` that sends each sampled client's
instruction to its SuperNode as a Message and turns the replies into ClientUpdates.

A client without a node, a node that goes offline or times out, or a ClientApp error is a
*failed* client (named with its node); a reply that cannot be decoded, or that answers for
another client, is a *rejected* update. Bytes are counted from the ArrayRecords sent and received.
"""

from __future__ import annotations

from flwr.app import Message
from flwr.serverapp import Grid

from fedtune.adapter_state import AdapterState
from fedtune.config import RunConfig
from fedtune.engine.rounds import ClientReplies
from fedtune.flower.exchange import exchange
from fedtune.flower.node_directory import NodeDirectory
from fedtune.flower.wire import (
    WireError,
    array_bytes,
    decode_update,
    encode_instruction,
)
from fedtune.protocol import ClientInstruction

TRAIN = "train"


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
