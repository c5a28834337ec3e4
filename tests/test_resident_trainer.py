"""The resident trainer's transport: a real trainer process on a private socket. Errors raised
by training come back to the ClientApp with their type and message; a missing trainer or a
wrong key gives a clear error, and the trainer keeps serving after refusing a connection.
(Successful training through it is tested end to end in test_flower_deployment.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from flower_harness import tiny_config

from fedtune.config import load_config
from fedtune.flower.deploy import launch, resident_trainer
from fedtune.flower.node_config import NodeSettings
from fedtune.flower.wire import TrainJob
from fedtune.protocol import ClientInstruction


@pytest.fixture
def trainer():
    socket = resident_trainer.new_socket_path()
    proc = subprocess.Popen(resident_trainer.command(socket), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        resident_trainer.wait_ready(proc, socket)
        yield socket, proc
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(socket.parent, ignore_errors=True)


def _job(tmp_path, client_id: int) -> TrainJob:
    cfg = load_config(tiny_config(tmp_path / "tiny.yaml", tmp_path / "run"))
    ins = ClientInstruction(client_id=client_id, round=0, lr=0.01, steps=1)
    return TrainJob(cfg=cfg, instruction=ins, start={"w": torch.zeros(2)})


def test_training_error_comes_back_named_and_the_trainer_keeps_serving(trainer, tmp_path):
    socket, proc = trainer
    for _ in range(2):  # the second request proves the first failure did not stop the trainer
        with pytest.raises(resident_trainer.ResidentTrainerError,
                           match="NodeConfigError: this node is client 0 but was asked to train client 1"):
            resident_trainer.train_remote(socket, _job(tmp_path, 1), NodeSettings(client_id=0), flower_run_id=7)
    assert proc.poll() is None


def test_wrong_key_is_refused_and_the_trainer_survives(trainer, tmp_path):
    socket, proc = trainer
    real_key = resident_trainer.key_path(socket).read_bytes()
    resident_trainer.key_path(socket).write_bytes(b"not the key")
    with pytest.raises(resident_trainer.ResidentTrainerError, match="no resident trainer at"):
        resident_trainer.train_remote(socket, _job(tmp_path, 0), NodeSettings(client_id=0), flower_run_id=7)
    resident_trainer.key_path(socket).write_bytes(real_key)
    with pytest.raises(resident_trainer.ResidentTrainerError, match="NodeConfigError"):
        resident_trainer.train_remote(socket, _job(tmp_path, 1), NodeSettings(client_id=0), flower_run_id=7)
    assert proc.poll() is None


def test_no_trainer_at_the_socket_is_a_clear_error(tmp_path):
    socket = tmp_path / "trainer.sock"
    with pytest.raises(resident_trainer.ResidentTrainerError, match=f"no resident trainer at {socket}"):
        resident_trainer.train_remote(socket, _job(tmp_path, 0), NodeSettings(client_id=0), flower_run_id=7)


def test_terminating_fedtune_flower_supernode_stops_its_supernode_and_trainer(tmp_path):
    """`kill` of `fedtune flower supernode` (SIGTERM, e.g. from systemd) stops the SuperNode and
    the resident trainer it started, and the trainer removes its private socket directory."""
    import re
    import signal
    import sys
    import time

    import psutil

    fedtune = [sys.executable, "-m", "fedtune.commands.cli", "flower", "supernode", "--client-id", "0", "--insecure",
               "--superlink", f"127.0.0.1:{launch.free_port()}", "--port", str(launch.free_port()),
               "--flwr-home", str(tmp_path / ".flwr")]
    proc = subprocess.Popen(fedtune, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        socket = Path(re.search(r"--socket (\S+)", proc.stdout.readline()).group(1))
        deadline = time.monotonic() + 60
        while len(psutil.Process(proc.pid).children()) < 2 or not socket.exists():  # trainer up, then node
            assert time.monotonic() < deadline and proc.poll() is None, "supernode or trainer did not start"
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, [p.cmdline() for p in alive]
        assert not socket.parent.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
