"""The embedded engine: a plain loop in one process over one base model, swapping only adapters.

It holds no FL logic: the Strategy decides who trains how and how updates combine, the
LocalTrainer trains. The round bookkeeping (checks, aggregation, evaluation, run directory,
checkpoints, resume) is the shared ``RoundLoop``; this module adds the in-process clients.
"""

from __future__ import annotations

from fedtune.adapter_state import AdapterState
from fedtune.algorithms import ALGORITHMS
from fedtune.client.alternating import snapshot
from fedtune.client.state_store import ClientStateStore
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.compression.transport import received_start
from fedtune.config import RunConfig
from fedtune.data.tokenize import pool
from fedtune.engine.progress import Progress
from fedtune.engine.rounds import ClientReplies, RoundLoop
from fedtune.engine.run_dir import RunDir
from fedtune.engine.wire import bytes_down, bytes_up
from fedtune.engine.workspace import Workspace
from fedtune.privacy.dp_sgd import sample_level_privacy
from fedtune.protocol import ClientInstruction
from fedtune.quality.feddqc import data_quality


class EmbeddedClients:
    """The clients of the embedded engine: one after the other, in this process, on one model."""

    def __init__(self, trainer: LocalTrainer, local_data: list[LocalData], progress: Progress):
        self.trainer, self.local_data, self.progress = trainer, local_data, progress

    def begin(self, first_round: int) -> None:
        pass

    def execute(self, round: int, work: list[tuple[ClientInstruction, AdapterState]]) -> ClientReplies:
        replies = ClientReplies()
        for ins, start in work:
            replies.bytes_down += bytes_down(ins, start)
            self.progress.start_client(ins.client_id, ins.steps)
            update = self.trainer.train(ins, received_start(ins, start), self.local_data[ins.client_id])
            replies.bytes_up += bytes_up(update)
            replies.updates.append((ins, update))
        return replies


def local_trainer(cfg: RunConfig, ws: Workspace, store: ClientStateStore) -> LocalTrainer:
    """The clients' trainer on the workspace's model (shared by every in-process client)."""
    personal = snapshot(ws.client.model) if ws.client is not None and ws.client.personal_model else None
    return LocalTrainer(ws.trained_model, ws.tokenizer, cfg.train, store, seed=cfg.seed,
                        reference=ws.dpo_reference(cfg.train), privacy=sample_level_privacy(cfg),
                        quality=data_quality(cfg), personal_start=personal)


def local_data(cfg: RunConfig, ws: Workspace) -> list[LocalData]:
    """Each client's tokens by client id; one client (id 0) holding everyone's for a strategy
    that pools the data (centralized training)."""
    if ALGORITHMS[cfg.algorithm.name].target.pools_data:
        return [LocalData(0, pool(ws.train_tokens))]
    return [LocalData(c, t, ws.task_stream(c, cfg.data.schedule, cfg.seed)) for c, t in enumerate(ws.train_tokens)]


class Simulation(RoundLoop):
    """The embedded engine: ``Simulation(cfg, ws, run_dir).run(resume)``; with
    ``federation.client_devices`` the round's clients train in parallel worker processes."""

    def __init__(self, cfg: RunConfig, ws: Workspace, run_dir: RunDir, progress: Progress | None = None):
        progress = progress or Progress(enabled=False)
        store = ClientStateStore(run_dir.clients)
        if cfg.federation.client_devices:
            from fedtune.engine.parallel import (
                ParallelClients,  # it imports this module
            )

            clients = self.parallel = ParallelClients(cfg, cfg.federation.client_devices, run_dir.clients, progress)
        else:
            self.parallel = None
            self.trainer = local_trainer(cfg, ws, store)
            clients = EmbeddedClients(self.trainer, local_data(cfg, ws), progress)
        super().__init__(cfg, ws, run_dir, clients, progress=progress, store=store)

    def run(self, resume: bool = False) -> dict:
        try:
            return super().run(resume)
        finally:
            if self.parallel is not None:
                self.parallel.close()
