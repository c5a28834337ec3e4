"""The Flower engine's clients under secure aggregation: a ``ClientExecutor`` that runs each
round's fit through Flower's SecAgg+ workflow (Bell et al., CCS 2020, "Secure Single-Server
Aggregation with (Poly)Logarithmic Overhead"; ``flwr.server.workflow.SecAggPlusWorkflow``), so
the server learns only the weighted mean of the sampled clients' adapters.

Flower 1.41 has SecAgg+ only on its legacy API: the workflow needs a ``LegacyContext`` and a
legacy ``flwr.server.strategy.Strategy``. ``_OneRound`` is that strategy, reduced to the two
calls the workflow makes: ``configure_fit`` hands out the fedtune instructions of exactly the
sampled clients' nodes, ``aggregate_fit`` keeps the unmasked aggregate. fedtune's own Strategy
(the round loop's) then treats that aggregate as one update (``ClientReplies.summed``).

Weighting: each node multiplies its adapter by w_i = round(n_i / max_weight · Q) / Q (n_i its
example count, Q the quantization range) before quantizing; the server unmasks Σ w_i·x_i and
Σ w_i and divides, so the result is Σ n_i x_i / Σ n_i up to 1/Q in the weights, i.e. FedAvg's
examples-weighted mean. Quantization error per value is at most (2·clipping_range / Q) per
client, divided by Σ w_i; max_weight is Flower's default (1000 examples).

Bytes count every record of every stage message (SecAgg+'s keys, shares and masked vectors
travel in ConfigRecords), not only ArrayRecords as on the plain wire.
"""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.server import ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from fedtune.adapter_state import AdapterState
from fedtune.engine.rounds import ClientReplies
from fedtune.flower.exchange import exchange
from fedtune.flower.grid_clients import FlowerClients
from fedtune.flower.secure_wire import decode_mean, encode_fitins, layout_of
from fedtune.protocol import ClientInstruction, ClientUpdate

log = logging.getLogger("fedtune")
MAX_WEIGHT = 1000.0  # SecAggPlusWorkflow's default


class _CountingGrid(Grid):
    """The run's Grid with the bytes of what is pushed and pulled counted, and Flower's
    ``send_and_receive`` (3 s polls) replaced by ``exchange`` (0.5 s); errors are kept by node."""

    def __init__(self, grid: Grid):
        self.grid, self.bytes_down, self.bytes_up = grid, 0, 0
        self.errors: dict[int, str] = {}  # node -> the last error reply's reason

    def set_run(self, run_id):
        self.grid.set_run(run_id)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, *args, **kwargs):
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self):
        return self.grid.get_node_ids()

    def push_messages(self, messages):
        messages = list(messages)
        self.bytes_down += sum(record_bytes(m.content) for m in messages)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids):
        replies = list(self.grid.pull_messages(message_ids))
        for reply in replies:
            if reply.has_error():
                self.errors[reply.metadata.src_node_id] = f"{reply.error.reason} (Flower error code {reply.error.code})"
            else:
                self.bytes_up += record_bytes(reply.content)
        return replies

    def send_and_receive(self, messages, *, timeout=None):
        return [r for r in exchange(self, list(messages), timeout) if r is not None]


def record_bytes(content: RecordDict) -> int:
    """Bytes of a message's records: arrays as Flower counts them, config values by their payload
    (Flower's ``ConfigRecord.count_bytes`` rejects the lists of bytes SecAgg+ sends)."""
    arrays = sum(rec.count_bytes() for rec in content.array_records.values())
    configs = sum(len(key) + _value_bytes(value) for rec in content.config_records.values()
                  for key, value in rec.items())
    return arrays + configs + sum(rec.count_bytes() for rec in content.metric_records.values())


def _value_bytes(value) -> int:
    if isinstance(value, list):
        return sum(_value_bytes(v) for v in value)
    if isinstance(value, (bytes, str)):
        return len(value.encode() if isinstance(value, str) else value)
    return 8  # bool, int, float


class _OneRound(LegacyStrategy):
    """The legacy strategy of one SecAgg+ round: fixed FitIns per node in, the aggregate out."""

    def __init__(self, fitins: dict[int, object]):
        self.fitins, self.results = fitins, None

    def configure_fit(self, server_round, parameters, client_manager):
        return list(self.fitins.items())

    def aggregate_fit(self, server_round, results, failures):
        self.results = results  # every FitRes holds the same unmasked mean (and its own metadata)
        return None, {}

    def initialize_parameters(self, client_manager):
        return None

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class SecureAggregatedClients(FlowerClients):
    """``FlowerClients`` (its node directory, config and resume handling) with each round run
    as one SecAgg+ fit round; the replies hold one update, the weighted mean (``summed``)."""

    runs_node_attacks = False

    def execute(self, round: int, work: list[tuple[ClientInstruction, AdapterState]]) -> ClientReplies:
        sa = self.cfg.privacy.secure_aggregation
        replies = ClientReplies()
        serving = self.directory.refresh()
        grid = _CountingGrid(self.grid)
        fitins, client_of = {}, {}
        for ins, start in work:
            node = serving.get(ins.client_id)
            if node is None:
                replies.failed[str(ins.client_id)] = "no SuperNode is connected for this client"
                continue
            proxy = GridClientProxy(node, grid, grid.run.run_id)
            fitins[proxy] = encode_fitins(ins, start, self.cfg, self.resumed_from, self.reference,
                                          sa.clipping_range, MAX_WEIGHT)
            client_of[node] = ins
            replies.senders[ins.client_id] = f"node {node}"
        strategy = _OneRound(fitins)
        if len(fitins) >= 2:  # SecAgg+ halts below two nodes
            workflow = SecAggPlusWorkflow(sa.num_shares, sa.reconstruction_threshold, max_weight=MAX_WEIGHT,
                                          clipping_range=sa.clipping_range, quantization_range=sa.quantization_range,
                                          timeout=sa.timeout if sa.timeout is not None else self.round_timeout)
            workflow(grid, self._context(grid, round, strategy))
        summed = {proxy.node_id: res for proxy, res in strategy.results or []}
        for node, ins in client_of.items():
            if node not in summed:
                why = grid.errors.get(node, "no reply" if strategy.results is not None else "the SecAgg+ round halted")
                replies.failed[str(ins.client_id)] = f"node {node}: left out of the SecAgg+ sum: {why}"
        replies.bytes_up, replies.bytes_down = grid.bytes_up, grid.bytes_down
        if summed:
            replies.summed = sorted(client_of[n].client_id for n in summed)
            first_ins, start = work[0]
            replies.updates.append((first_ins, mean_update(list(summed.values()), layout_of(start))))
        return replies

    @staticmethod
    def _context(grid: Grid, round: int, strategy: _OneRound) -> LegacyContext:
        """The LegacyContext SecAggPlusWorkflow reads: the round and (unused) global parameters."""
        state = RecordDict({MAIN_CONFIGS_RECORD: ConfigRecord({Key.CURRENT_ROUND: round}),
                            MAIN_PARAMS_RECORD: ArrayRecord()})
        context = Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=state, run_config={})
        return LegacyContext(context, ServerConfig(num_rounds=1), strategy, SimpleClientManager())


def mean_update(results: list, layout) -> ClientUpdate:
    """One ClientUpdate for the SecAgg+ aggregate: the unmasked mean; num_examples and the
    metrics (examples-weighted; example counts summed) from the FitRes metadata, which Flower's
    workflow passes in the clear."""
    total = sum(res.num_examples for res in results)
    seen = sum(float(res.metrics.get("examples", 0)) for res in results) or 1.0
    metrics = {}
    for key in sorted({k for res in results for k in res.metrics} - {"client-id", "examples"}):
        metrics[key] = sum(float(res.metrics.get(key, 0)) * float(res.metrics.get("examples", 0))
                           for res in results) / seen
    metrics["examples"] = int(sum(float(res.metrics.get("examples", 0)) for res in results))
    return ClientUpdate(client_id=-1, adapter=decode_mean(results[0].parameters, layout), num_examples=total,
                        metrics=metrics, clients=len(results))
