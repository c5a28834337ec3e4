"""The embedded engine: a plain loop in one process over one base model, swapping only adapters.

It holds no FL logic: the Strategy decides who trains how and how updates combine, the
LocalTrainer trains. The round bookkeeping (checks, aggregation, evaluation, run directory,
checkpoints, resume) is the shared ``RoundLoop``; this module adds the in-process clients.
"""

from __future__ import annotations

from fedtune import adapter_state as ops
from fedtune.adapter_state import AdapterState
from fedtune.client.alternating import snapshot
from fedtune.client.state_store import ClientStateStore
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.compression.transport import received_start
from fedtune.config import RunConfig
from fedtune.data.tokenize import pool
from fedtune.engine.progress import Progress
from fedtune.engine.rounds import ClientReplies, RoundLoop
from fedtune.engine.run_dir import RunDir
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
            replies.bytes_down += ops.num_bytes(start) + sum(ops.num_bytes(t) for t in ins.tensors.values())
            self.progress.start_client(ins.client_id, ins.steps)
            update = self.trainer.train(ins, received_start(ins, start), self.local_data[ins.client_id])
            replies.bytes_up += ops.num_bytes(update.adapter) + sum(ops.num_bytes(t) for t in update.tensors.values())
            replies.updates.append((ins, update))
        return replies


class Simulation(RoundLoop):
    """The embedded engine: ``Simulation(cfg, ws, run_dir).run(resume)``."""

    def __init__(self, cfg: RunConfig, ws: Workspace, run_dir: RunDir, progress: Progress | None = None):
        progress = progress or Progress(enabled=False)
        store = ClientStateStore(run_dir.clients)
        personal = snapshot(ws.client.model) if ws.client is not None and ws.client.personal_model else None
        self.trainer = LocalTrainer(ws.trained_model, ws.tokenizer, cfg.train, store, seed=cfg.seed,
                                    reference=ws.dpo_reference(cfg.train), privacy=sample_level_privacy(cfg),
                                    quality=data_quality(cfg), personal_start=personal)
        clients = EmbeddedClients(self.trainer, [], progress)
        super().__init__(cfg, ws, run_dir, clients, progress=progress, store=store)
        if self.strategy.pools_data:  # one client (id 0) holding every client's data
            clients.local_data = [LocalData(0, pool(ws.train_tokens))]
        else:
            clients.local_data = [LocalData(c, t) for c, t in enumerate(ws.train_tokens)]
