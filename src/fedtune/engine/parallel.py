"""The embedded engine's clients in parallel: one worker process per device
(``federation.client_devices: [cuda:0, cuda:1]``), each with the base model loaded once.

A round's sampled clients are dealt to the workers by position (client k of the round to worker
k mod W); each worker trains its clients one after the other with the same ``LocalTrainer`` the
sequential engine uses, built from the same config and workspace, on the same on-disk client
state store. Every client's RNG is a function of (seed, round, client), so the updates — and the
run — equal the sequential run's; bit for bit where the arithmetic is the same (same device type,
same number of threads: workers take this process's thread count unless ``threads`` says).
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from pathlib import Path

import torch

from fedtune.adapter_state import AdapterState
from fedtune.engine.progress import Progress
from fedtune.engine.rounds import ClientReplies
from fedtune.engine.wire import bytes_down, bytes_up
from fedtune.models.device import resolve_device
from fedtune.protocol import ClientInstruction


class WorkerFailed(RuntimeError):
    """A client worker process could not start or train; the message is the worker's error."""


class ParallelClients:
    """ClientExecutor: the round's clients over one worker process per device."""

    def __init__(self, cfg, devices: list[str], store_root: Path, progress: Progress, threads: int | None = None):
        for device in devices:  # a device this machine lacks fails here, in one line, not in a worker
            resolve_device(device, "federation.client_devices")
        ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch state, works with CUDA
        self.progress, self.workers = progress, []
        config = cfg.model_dump(mode="json")
        for device in devices:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(config, device, str(store_root), threads or torch.get_num_threads(),
                                                   theirs), daemon=True, name=f"fedtune-client-worker-{device}")
            proc.start()
            theirs.close()  # the worker holds it now: its exit ends our reads with EOFError
            self.workers.append((device, proc, mine))
        for worker in self.workers:  # every worker has loaded its model (or says why not)
            self._receive(worker)

    def begin(self, first_round: int) -> None:
        pass

    def execute(self, round: int, work: list[tuple[ClientInstruction, AdapterState]]) -> ClientReplies:
        shares = [list(range(k, len(work), len(self.workers))) for k in range(len(self.workers))]
        for (_, _, conn), positions in zip(self.workers, shares):
            if positions:
                conn.send((round, [work[p] for p in positions]))
        updates: dict[int, object] = {}
        for worker, positions in zip(self.workers, shares):
            if positions:
                updates.update(zip(positions, self._receive(worker)))
        replies = ClientReplies()
        for p, (ins, start) in enumerate(work):  # back in instruction order
            self.progress.start_client(ins.client_id, ins.steps)
            replies.bytes_down += bytes_down(ins, start)
            replies.bytes_up += bytes_up(updates[p])
            replies.updates.append((ins, updates[p]))
        return replies

    def _receive(self, worker):
        device, proc, conn = worker
        try:
            status, payload = conn.recv()
        except EOFError:
            proc.join(5)
            raise WorkerFailed(f"client worker on {device} exited (code {proc.exitcode})") from None
        if status == "error":
            raise WorkerFailed(f"client worker on {device}: {payload}")
        return payload

    def close(self) -> None:
        for _, proc, conn in self.workers:
            if proc.is_alive():
                conn.send(None)
                proc.join(30)
            if proc.is_alive():
                proc.kill()


def serve(config: dict, device: str, store_root: str, threads: int, conn) -> None:
    """A worker: load the model on ``device``, build the workspace and trainer as the sequential
    engine does, then train the (round, [(instruction, start)]) batches it is sent until None."""
    try:
        torch.set_num_threads(threads)
        from fedtune.cache import cache_root
        from fedtune.client.state_store import ClientStateStore
        from fedtune.compression.transport import received_start
        from fedtune.config import from_dict
        from fedtune.engine.simulation import local_data, local_trainer
        from fedtune.engine.workspace import build_workspace
        from fedtune.models.loader import load_base

        config = {**config, "model": {**config["model"], "device": device}}  # this worker's device
        cfg = from_dict(config, "client worker")
        ws = build_workspace(cfg, load_base(cfg.model), cache_dir=cache_root())
        store = ClientStateStore(store_root)
        trainer, data = local_trainer(cfg, ws, store), local_data(cfg, ws)
        conn.send(("ready", None))
    except Exception:  # noqa: BLE001 - the parent raises it with the worker's traceback
        conn.send(("error", traceback.format_exc(limit=4)))
        return
    while (message := conn.recv()) is not None:
        round, batch = message
        store.round = round
        try:
            conn.send(("ok", [trainer.train(ins, received_start(ins, start), data[ins.client_id])
                              for ins, start in batch]))
        except Exception:  # noqa: BLE001
            conn.send(("error", traceback.format_exc(limit=6)))
