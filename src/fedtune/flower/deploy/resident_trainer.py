"""A site's resident trainer: one long-lived process that keeps the base model in memory
across rounds, so a deployment SuperNode does not reload it for every message.

Flower 1.41's SuperNode starts a fresh ``flwr-clientapp`` process per message (one task, then
exit: flwr/supernode/runtime/run_clientapp.py), so a model cached in the ClientApp process dies
with it. ``fedtune flower supernode`` therefore starts this process beside the SuperNode and
passes its socket in the node config (``trainer-socket``); the ClientApp then only decodes the
message, hands the job over this local socket and encodes the reply. Training itself is the same
``node_runtime.train`` call, so results are identical with or without it.

The socket is a Unix domain socket in a private (0700) directory, and connections must prove
the key in ``trainer.key`` beside it (multiprocessing's HMAC challenge), so only this site's
user can submit jobs.

Run it by hand with ``python -m fedtune.flower.deploy.resident_trainer --socket PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kept out of import time: `fedtune flower supernode` needs none of torch
    from fedtune.flower.node_config import NodeSettings
    from fedtune.flower.wire import TrainJob
    from fedtune.protocol import ClientUpdate

log = logging.getLogger("fedtune")
READY = "resident trainer listening on"


class ResidentTrainerError(RuntimeError):
    """The resident trainer could not be reached, or its training raised."""


def key_path(socket: Path) -> Path:
    return Path(socket).with_name("trainer.key")


def serve(socket: Path) -> None:
    """Accept jobs on ``socket`` one at a time until terminated; the model stays loaded."""
    from fedtune.flower import node_runtime  # torch, transformers: loaded once, here

    socket = Path(socket)
    socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(key_path(socket), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    socket.unlink(missing_ok=True)
    with Listener(str(socket), family="AF_UNIX", authkey=key) as listener:
        os.chmod(socket, 0o600)
        print(f"{READY} {socket} (pid {os.getpid()})", flush=True)
        while True:
            try:
                conn = listener.accept()
            except (AuthenticationError, OSError, EOFError) as exc:  # e.g. a client without the key
                log.warning("resident trainer: refused a connection: %s", exc)
                continue
            with conn:
                try:
                    _send(conn, _run(_recv(conn), node_runtime.train))
                except (OSError, EOFError) as exc:  # the ClientApp went away; Flower reports that round
                    log.warning("resident trainer: lost the ClientApp's connection: %s", exc)
                except Exception:  # noqa: BLE001 -- e.g. an unreadable request: refuse it, keep serving
                    log.exception("resident trainer: could not handle a request")


def _send(conn, obj) -> None:
    """Plain pickle: ``Connection.send`` would use torch's shared-memory reductions, which only
    work between processes of one multiprocessing family, not between unrelated ones."""
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _recv(conn):
    return pickle.loads(conn.recv_bytes())


def _run(request: tuple[TrainJob, NodeSettings, int], train) -> tuple[str, object]:
    job, node, flower_run_id = request
    started = time.perf_counter()
    try:
        reply = ("ok", train(job, node, flower_run_id))
    except Exception as exc:  # noqa: BLE001 -- reported to the ClientApp, which fails the message
        log.exception("resident trainer: client %s failed", node.client_id)
        return ("error", f"{type(exc).__name__}: {exc}")
    log.info("resident trainer: client %d round %d in %.1f s", node.client_id, job.instruction.round,
             time.perf_counter() - started)
    return reply


def train_remote(socket: Path, job: TrainJob, node: NodeSettings, flower_run_id: int) -> ClientUpdate:
    """Have the resident trainer at ``socket`` run ``job``; raise ``ResidentTrainerError`` on failure."""
    socket = Path(socket)
    try:
        key = key_path(socket).read_bytes()
        conn = Client(str(socket), family="AF_UNIX", authkey=key)
    except (AuthenticationError, OSError) as exc:
        raise ResidentTrainerError(f"no resident trainer at {socket} ({exc}); is `fedtune flower supernode` "
                                   "still running?") from None
    with conn:
        _send(conn, (job, node, flower_run_id))
        try:
            status, payload = _recv(conn)
        except EOFError:
            raise ResidentTrainerError(f"the resident trainer at {socket} exited during training") from None
    if status != "ok":
        raise ResidentTrainerError(f"resident trainer: {payload}")
    return payload


def new_socket_path() -> Path:
    """A socket path in a fresh private directory (short, as Unix socket paths must be)."""
    return Path(tempfile.mkdtemp(prefix="fedtune-node-")) / "trainer.sock"


def command(socket: Path) -> list[str]:
    return [sys.executable, "-m", "fedtune.flower.deploy.resident_trainer", "--socket", str(socket)]


def wait_ready(proc: subprocess.Popen, socket: Path, timeout: float = 120.0) -> None:
    """Block until the trainer at ``socket`` accepts connections (or raise if it exited)."""
    deadline = time.monotonic() + timeout
    while not (Path(socket).exists() and key_path(socket).exists()):
        if proc.poll() is not None:
            raise ResidentTrainerError(f"the resident trainer exited with code {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise ResidentTrainerError(f"the resident trainer did not listen on {socket} within {timeout:.0f} s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket path to listen on.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the clean-up below
    try:
        serve(args.socket)
    except KeyboardInterrupt:
        pass
    finally:
        args.socket.unlink(missing_ok=True)
        key_path(args.socket).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the private directory, when nothing else is in it
            args.socket.parent.rmdir()


if __name__ == "__main__":
    main()
