"""Test harness for the Flower engine: real SuperLink/SuperNode processes on 127.0.0.1 (free
ports), a project-local FLWR_HOME, `flwr run`, and cleanup that always kills what it started.

Every process gets its own session (process group), so stopping it also stops the SuperExec
and ClientApp processes it spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from fedtune.flower.deploy import launch, resident_trainer


def write_config(path: Path, overrides: dict) -> Path:
    """A fedtune YAML from dotted overrides ({"federation.rounds": 2, ...})."""
    tree: dict = {}
    for key, value in overrides.items():
        node = tree
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value) if isinstance(value, str) else value
    path.write_text(yaml.safe_dump(tree))
    return path


TINY = {
    "name": "flower-tiny", "seed": 0, "model.name": "tiny-random",
    "federation.num_clients": 2, "federation.rounds": 2,
    "train.steps": 2, "train.batch_size": 4, "train.lr": 0.01,
    "data.suite.entities_per_client": 2, "data.suite.skill_train_per_client": 8, "data.suite.test_per_rule": 4,
    "data.max_length": 64, "eval.every": 0,
}


def tiny_config(path: Path, output: Path, **extra) -> Path:
    return write_config(path, {**TINY, "output.dir": str(output), **extra})


def embedded_run(config: Path, output: Path) -> Path:
    """The same config on the embedded engine (in this process); returns its run directory."""
    from fedtune.config import load_config
    from fedtune.engine.runner import run_experiment
    from fedtune.models.loader import load_model

    cfg = load_config(config, [f"output.dir={output}"])
    run_experiment(cfg, loaded=load_model(cfg.model.name), progress=False)
    return output


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def final_adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def assert_adapters_close(a: dict, b: dict, atol: float = 1e-5) -> float:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert all(torch.allclose(a[k], b[k], atol=atol, rtol=1e-4) for k in a), f"max abs difference {worst}"
    return worst


def stop_local_superlink(flwr_home: Path) -> None:
    """Stop the simulation SuperLink that `flwr run ... local` started in the background for
    ``flwr_home`` (Flower keeps it running for later runs), with its children."""
    import psutil

    home = str(Path(flwr_home).resolve())
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("flower-superlink" in part for part in proc.info["cmdline"] or []) \
                    and proc.environ().get("FLWR_HOME") == home:
                for p in [*proc.children(recursive=True), proc]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


class Proc:
    def __init__(self, name: str, cmd: list[str], log: Path, env: dict, cwd: Path):
        self.name, self.log = name, log
        self._file = open(log, "wb")
        self.popen = subprocess.Popen(cmd, stdout=self._file, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                      start_new_session=True)

    def text(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace")

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited (rc {self.popen.returncode}):\n{self.text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: {needle!r} x{count} not seen in {timeout} s:\n{self.text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        """Signal the whole process group; SIGKILL it if it does not exit in time."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # leftovers of the group (SuperExec, ClientApps)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._file.close()


class Federation:
    """A SuperLink and SuperNodes in ``root``; use as a context manager (stops everything)."""

    def __init__(self, root: Path, tls: launch.Tls | None = None, node_auth: bool = False,
                 simulation: bool = False):
        self.root, self.tls, self.node_auth, self.simulation = root, tls, node_auth, simulation
        self.home = root / ".flwr"
        self.env = launch.flower_env(self.home)
        self.env["HF_HUB_OFFLINE"] = "1"
        self.port = launch.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[Proc] = []
        self.nodes: dict[int, Proc] = {}

    def __enter__(self) -> "Federation":
        self.superlink = self._start("superlink", launch.superlink_command(
            port=self.port, tls=self.tls, node_auth=self.node_auth, simulation=self.simulation))
        self.superlink.wait_for("Uvicorn running", timeout=60)
        launch.write_connection(self.home, "test", self.address, self.tls.ca if self.tls else None)
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def _start(self, name: str, cmd: list[str]) -> Proc:
        proc = Proc(name, cmd, self.root / f"{name}.log", self.env, self.root)
        self.procs.append(proc)
        return proc

    def add_node(self, client_id: int, private_key: Path | None = None, name: str | None = None,
                 resident: bool = False, **node_config) -> Proc:
        """A SuperNode; with ``resident``, also the site's resident trainer (as `fedtune flower supernode`)."""
        name = name or f"supernode{client_id}-{len(self.procs)}"
        node_config.setdefault("threads", 1)  # two nodes on two cores: no oversubscription
        if resident:
            socket = resident_trainer.new_socket_path()  # the trainer removes it when stopped
            self._start(f"{name}-trainer", resident_trainer.command(socket)).wait_for(resident_trainer.READY)
            node_config["trainer-socket"] = str(socket)
        cmd = launch.supernode_command(self.address, client_id, launch.free_port(),
                                       root_certificates=self.tls.ca if self.tls else None,
                                       private_key=private_key, extra_node_config=node_config)
        proc = self._start(name, cmd)
        self.nodes[client_id] = proc
        return proc

    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        cmd = [launch.executable("flwr"), *args]
        return subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def _run_command(self, config: Path, run_config: dict, federation_config: dict | None) -> list[str]:
        app = launch.write_app(config, self.root / f"app-{config.stem}")
        return launch.flwr_run_command(app, "test", run_config, federation_config)

    def run(self, config: Path, timeout: float = 240.0, federation_config: dict | None = None,
            **run_config) -> str:
        """`flwr run` of ``config`` (streamed until the run ends); returns the output."""
        cmd = self._run_command(config, run_config, federation_config)
        done = subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        return out

    def start_run(self, config: Path, name: str = "flwr-run", **run_config) -> Proc:
        """`flwr run` in the background (its output in ``<root>/<name>.log``)."""
        return self._start(name, self._run_command(config, run_config, None))
