"""Command lines for Flower's processes, the offline-safe environment they run in, and the
project-local Flower home (``FLWR_HOME``) with its SuperLink connections (``config.toml``).

Used by ``fedtune flower ...``, the tests and the engines benchmark, so every path starts
Flower the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import tomli
import tomli_w

DEFAULT_HOME = Path(".flwr")

# Environment variables flwr 1.41 reads (flwr/common/constant.py, flwr/supercore/constant.py).
OFFLINE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",  # no usage events sent to Flower
    "FLWR_DISABLE_UPDATE_CHECK": "1",  # no version check against Flower's servers at start-up
    # SuperLinks started by `flwr run` (the local simulation one) would otherwise `uv sync` the
    # app's dependencies into a fresh venv per run, from the network.
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}


def flower_env(flwr_home: Path | None = None, base: dict | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus the offline-safe settings and
    ``FLWR_HOME`` (default: ./.flwr), with this venv's bin/ first on PATH."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    env["FLWR_HOME"] = str(Path(flwr_home or DEFAULT_HOME).resolve())
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for loopback federations: tests, benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def executable(name: str) -> str:
    """A Flower console script from this venv when present (e.g. ``flower-superlink``)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class Tls:
    """TLS files: the CA certificate every party trusts, and the SuperLink's certificate and key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_dir(cls, certs: Path) -> "Tls":
        """``ca.crt``, ``server.pem`` and ``server.key`` in ``certs`` (as `fedtune flower certs` writes them)."""
        return cls(certs / "ca.crt", certs / "server.pem", certs / "server.key")


def superlink_command(host: str = "127.0.0.1", port: int = 9093, tls: Tls | None = None,
                      node_auth: bool = False, database: Path | None = None, simulation: bool = False) -> list[str]:
    cmd = [executable("flower-superlink"), "--host", host, "--port", str(port),
           "--disable-runtime-dependency-installation"]
    if tls is None:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(tls.ca), "--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    if node_auth:
        cmd.append("--enable-supernode-auth")
    if database is not None:
        cmd += ["--database", str(database)]
    if simulation:
        cmd.append("--simulation")
    return cmd


def node_config_string(config: dict) -> str:
    """``{"client-id": 0, "data-file": "/d.jsonl"}`` -> ``client-id=0 data-file="/d.jsonl"``."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in config.items())


def supernode_command(superlink: str, client_id: int, runtime_port: int = 9094, data_file: Path | None = None,
                      root_certificates: Path | None = None, private_key: Path | None = None,
                      extra_node_config: dict | None = None) -> list[str]:
    node = {"client-id": client_id}
    if data_file is not None:
        node["data-file"] = str(Path(data_file).resolve())
    node.update(extra_node_config or {})
    cmd = [executable("flower-supernode"), "--superlink", superlink, "--port", str(runtime_port),
           "--node-config", node_config_string(node)]
    cmd += ["--root-certificates", str(root_certificates)] if root_certificates else ["--insecure"]
    if private_key is not None:
        cmd += ["--auth-supernode-private-key", str(private_key)]
    return cmd


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    return json.dumps(text) if '"' not in text else f"'{text}'"  # TOML basic (or literal) string


def flwr_run_command(app_dir: Path, connection: str, run_config: dict | None = None,
                     federation_config: dict | None = None, stream: bool = True) -> list[str]:
    cmd = [executable("flwr"), "run", str(app_dir), connection]
    if run_config:
        cmd += ["--run-config", " ".join(f"{k}={toml_value(v)}" for k, v in run_config.items())]
    if federation_config:
        cmd += ["--federation-config", " ".join(f"{k}={toml_value(v)}" for k, v in federation_config.items())]
    if stream:
        cmd.append("--stream")
    return cmd


def write_connection(flwr_home: Path, name: str, address: str, root_certificates: Path | None = None,
                     make_default: bool = False) -> Path:
    """Add or replace ``[superlink.<name>]`` in ``$FLWR_HOME/config.toml`` (insecure without a CA)."""
    path = Path(flwr_home) / "config.toml"
    config = tomli.loads(path.read_text()) if path.exists() else {}
    links = config.setdefault("superlink", {})
    links.setdefault("local", {"address": ":local:"})
    links.setdefault("default", "local")
    entry: dict = {"address": address}
    if root_certificates is not None:
        entry["root-certificates"] = str(Path(root_certificates).resolve())
    else:
        entry["insecure"] = True
    links[name] = entry
    if make_default:
        links["default"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config))
    return path


APP_PYPROJECT = """\
# A minimal Flower app wrapping one fedtune config (written by `fedtune flower run`).
[project]
name = "{name}"
version = "1.0.0"
description = "fedtune run {name}"
license = "Apache-2.0"

[tool.flwr.app]
publisher = "fedtune"

[tool.flwr.app.components]
serverapp = "fedtune.flower.server_app:app"
clientapp = "fedtune.flower.client_app:app"

[tool.flwr.app.config]
config = "fedtune.yaml"
set = ""
resume = false
min-replies = 0
round-timeout = 0.0
node-wait = 120.0
"""


def write_app(config: Path, app_dir: Path) -> Path:
    """A Flower app directory holding ``config`` (so the config travels in the FAB to the SuperLink)."""
    import re

    app_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9-]+", "-", Path(config).stem.lower()).strip("-") or "fedtune-run"
    (app_dir / "pyproject.toml").write_text(APP_PYPROJECT.format(name=f"fedtune-{name}"))
    shutil.copyfile(config, app_dir / "fedtune.yaml")
    return app_dir
