"""Which SuperNode is which client: each new node is asked once (a ``query.describe`` message)
for the client id in its node config (``client-id``, or ``partition-id`` in simulation).

``announce()`` asks the nodes online now without waiting, so the ServerApp can build its
workspace while the nodes start their ClientApps to answer; ``refresh()`` reads the answers."""

from __future__ import annotations

import logging
import time

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedtune.config import FederationConfig
from fedtune.flower.exchange import collect, exchange

log = logging.getLogger("fedtune")
DESCRIBE = "query.describe"


class NodeDirectory:
    def __init__(self, grid: Grid, federation: FederationConfig, timeout: float = 60.0):
        self.grid, self.federation, self.timeout = grid, federation, timeout
        self.client_of: dict[int, int] = {}  # node id -> client id
        self.ignored: set[int] = set()  # nodes that cannot serve a client of this run
        self._asked: list[tuple[int, str]] = []  # (node, message id) of announce()'s questions

    @property
    def num_clients(self) -> int:  # read late: the run's data may fix another count (use_config)
        return self.federation.num_clients

    def announce(self) -> None:
        """Ask the nodes online now which clients they are; the answers are read by refresh()."""
        nodes = sorted(set(self.grid.get_node_ids()) - self.client_of.keys() - self.ignored)
        if nodes:
            ids = self.grid.push_messages([self._question(n) for n in nodes])
            self._asked = list(zip(nodes, ids))

    def refresh(self) -> dict[int, int]:
        """{client id: node id} over the nodes online now; new nodes are described first."""
        if self._asked:
            asked, self._asked = self._asked, []
            self._record([n for n, _ in asked], collect(self.grid, [m for _, m in asked], self.timeout))
        online = set(self.grid.get_node_ids())
        for node in [n for n in self.client_of if n not in online]:
            log.warning("node %d (client %d) is no longer online", node, self.client_of.pop(node))
        new = sorted(online - self.client_of.keys() - self.ignored)
        if new:
            self._describe(new)
        return {c: n for n, c in self.client_of.items()}

    def wait(self, seconds: float) -> dict[int, int]:
        """Refresh until every client has a node or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        serving = self.refresh()
        while len(serving) < self.num_clients and time.monotonic() < deadline:
            time.sleep(1.0)
            serving = self.refresh()
        missing = sorted(set(range(self.num_clients)) - serving.keys())
        if missing:
            log.warning("no SuperNode for clients %s after %.0f s; continuing without them", missing, seconds)
        return serving

    def _question(self, node: int) -> Message:
        return Message(RecordDict(), dst_node_id=node, message_type=DESCRIBE, group_id="describe")

    def _describe(self, nodes: list[int]) -> None:
        self._record(nodes, exchange(self.grid, [self._question(n) for n in nodes], self.timeout))

    def _record(self, nodes: list[int], replies: list) -> None:
        for node, reply in zip(nodes, replies):
            if reply is None or reply.has_error():
                why = "no reply" if reply is None else reply.error.reason
                log.warning("node %d cannot say which client it is (%s); it is left out", node, why)
                self.ignored.add(node)
                continue
            info = reply.content.config_records["node"]
            client = int(info["client-id"])
            partitions = int(info.get("num-partitions", 0))
            if partitions and partitions != self.num_clients:
                raise ValueError(f"the simulation has {partitions} SuperNodes but the config has "
                                 f"{self.num_clients} clients: run it with --federation-config "
                                 f"\"num-supernodes={self.num_clients}\" or set federation.num_clients")
            taken = next((n for n, c in self.client_of.items() if c == client), None)
            if not 0 <= client < self.num_clients:
                log.warning("node %d says it is client %d, outside 0..%d; it is left out", node, client,
                            self.num_clients - 1)
                self.ignored.add(node)
            elif taken is not None:
                log.warning("node %d says it is client %d, already served by node %d; it is left out",
                            node, client, taken)
                self.ignored.add(node)
            else:
                log.info("node %d is client %d", node, client)
                self.client_of[node] = client
