"""`fedtune flower ...`: start a SuperLink or a SuperNode and launch runs, offline-safe.

Each command prints the Flower command it runs, and runs it with telemetry, update checks and
runtime dependency installation off, and FLWR_HOME in the project (./.flwr by default).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fedtune.flower.deploy import launch, resident_trainer

app = typer.Typer(
    help=(
        "Run fedtune on Flower's engines: the simulation engine on this machine, or a SuperLink "
        "with one SuperNode per site (docs/deployment.md).\n\n"
        "Every command prints the Flower command it runs and sets FLWR_TELEMETRY_ENABLED=0, "
        "FLWR_DISABLE_UPDATE_CHECK=1, FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 and "
        "FLWR_HOME=./.flwr (override with --flwr-home)."
    ),
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

HomeOpt = Annotated[Path, typer.Option("--flwr-home", help="Flower's home: config.toml, state, installed apps.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Print the Flower command(s) without running them.")]
CONNECTION = "fedtune"  # the config.toml connection `fedtune flower superlink` writes


def _show(cmd: list[str]) -> None:
    console.print(f"[bold]$[/] {shlex.join(cmd)}", highlight=False, soft_wrap=True)


def _exec(cmd: list[str], env: dict, dry_run: bool) -> None:
    """Print ``cmd`` and run it in the foreground until it exits (Ctrl-C or SIGTERM stops it)."""
    _show(cmd)
    if dry_run:
        return
    with _background(cmd, env) as proc:
        raise typer.Exit(proc.wait())


@contextlib.contextmanager
def _background(cmd: list[str], env: dict):
    """Run ``cmd`` as a child process for the ``with`` block and stop it when the block ends,
    also when this process gets Ctrl-C or SIGTERM (so `kill` of fedtune leaves no orphans)."""
    proc = subprocess.Popen(cmd, env=env)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield proc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _exit_on_sigterm(signum, frame):
    raise typer.Exit(128 + signal.SIGTERM)


@app.command()
def superlink(
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The one port of the Fleet, Control and Runtime APIs.")] = 9093,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP, for tests on one machine only.")] = False,
    certs: Annotated[Optional[Path], typer.Option(
        help="TLS directory with ca.crt, server.pem (certificate for the SuperLink's host name/IP) and server.key.")] = None,
    auth_keys: Annotated[Optional[list[Path]], typer.Option(
        "--auth-keys", help="SuperNode public keys (OpenSSH ECDSA .pub files, or directories of them). "
        "Turns on SuperNode authentication (needs --certs) and registers these keys once the SuperLink is up.")] = None,
    database: Annotated[Optional[Path], typer.Option(help="SQLite state file, so registered nodes survive a "
                                                     "restart (default: in memory).")] = None,
    address: Annotated[Optional[str], typer.Option(
        help="Address clients use to reach this SuperLink, for the `fedtune` connection written to "
        "config.toml (default: HOST:PORT, or 127.0.0.1:PORT when HOST is 0.0.0.0).")] = None,
    flwr_home: HomeOpt = launch.DEFAULT_HOME,
    dry_run: DryOpt = False,
):
    """Start a Flower SuperLink (the server side; fedtune's ServerApp runs inside it).

    Also writes the connection `fedtune` to $FLWR_HOME/config.toml, which `fedtune flower run --federation fedtune` uses. Runs in the foreground; stop it with Ctrl-C.
    """
    if insecure == (certs is not None):
        raise typer.BadParameter("pass exactly one of --certs DIR (TLS) or --insecure (testing only)")
    keys = _public_keys(auth_keys or [])
    if keys and certs is None:
        raise typer.BadParameter("--auth-keys needs TLS: pass --certs DIR", param_hint="--auth-keys")
    tls = launch.Tls.from_dir(certs) if certs else None
    if tls:
        for f in (tls.ca, tls.cert, tls.key):
            if not f.is_file():
                raise typer.BadParameter(f"{f} not found", param_hint="--certs")
    env = launch.flower_env(flwr_home)
    reach = address or f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    conf = launch.write_connection(flwr_home, CONNECTION, reach, tls.ca if tls else None)
    console.print(f"connection '{CONNECTION}' -> {reach} written to {conf}")
    cmd = launch.superlink_command(host, port, tls, node_auth=bool(keys), database=database)
    if not keys:
        _exec(cmd, env, dry_run)
        return
    _show(cmd)
    registers = [[launch.executable("flwr"), "supernode", "register", str(k), CONNECTION] for k in keys]
    for r in registers:
        _show(r)
    if dry_run:
        return
    with _background(cmd, env) as proc:
        _register_when_up(registers, env, proc)
        raise typer.Exit(proc.wait())


def _public_keys(paths: list[Path]) -> list[Path]:
    keys = []
    for p in paths:
        if p.is_dir():
            keys += sorted(p.glob("*.pub"))
        elif p.is_file():
            keys.append(p)
        else:
            raise typer.BadParameter(f"{p} not found", param_hint="--auth-keys")
    return keys


def _register_when_up(registers: list[list[str]], env: dict, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(registers)
    while pending and time.monotonic() < deadline and proc.poll() is None:
        done = subprocess.run(pending[0], env=env, capture_output=True, text=True)
        if done.returncode == 0:
            console.print(done.stdout.strip())
            pending.pop(0)
        elif "already" in (done.stdout + done.stderr).lower():
            console.print(f"{pending.pop(0)[3]}: already registered")
        else:
            time.sleep(1.0)  # the SuperLink is still starting
    if pending:
        console.print(f"[red]could not register {len(pending)} key(s); see `flwr supernode register --help`[/]")


@app.command()
def supernode(
    client_id: Annotated[int, typer.Option("--client-id", help="This site's client index in the federation (0-based).")],
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="JSON Lines SFT records ({\"messages\": [...], \"category\": ...}) this site trains on. "
        "Without it, the site trains on its partition of the config's built-in suite.")] = None,
    superlink: Annotated[str, typer.Option(help="The SuperLink's address, host:port.")] = "127.0.0.1:9093",
    root_cert: Annotated[Optional[Path], typer.Option(
        "--root-cert", help="CA certificate (ca.crt) that signed the SuperLink's certificate.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP, for tests on one machine only.")] = False,
    auth_key: Annotated[Optional[Path], typer.Option(
        "--auth-key", help="This node's private key (OpenSSH ECDSA), when the SuperLink authenticates nodes.")] = None,
    port: Annotated[int, typer.Option(help="Local port of this node's runtime API (distinct per node on one "
                                      "machine).")] = 9094,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Torch threads for training (default: all cores); "
                                                   "set it when several SuperNodes share a machine.")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(
        help="Where client-side algorithm state (e.g. SCAFFOLD) is kept (default: $FLWR_HOME/fedtune-node-state).")] = None,
    resident: Annotated[bool, typer.Option(
        "--resident/--per-message", help="Train in a resident process that keeps the base model loaded across "
        "rounds (default), or in Flower's per-message ClientApp process, which loads the model every round.")] = True,
    flwr_home: HomeOpt = launch.DEFAULT_HOME,
    dry_run: DryOpt = False,
):
    """Start a Flower SuperNode for one site: it connects out to the SuperLink and trains there.

    Beside it runs the site's resident trainer (python -m fedtune.flower.deploy.resident_trainer), which keeps the base model in memory between rounds; Flower's ClientApp hands it each job over a private local socket. Runs in the foreground; stop it with Ctrl-C. The data never leaves this machine: only LoRA adapters travel.
    """
    if insecure == (root_cert is not None):
        raise typer.BadParameter("pass exactly one of --root-cert CA (TLS) or --insecure (testing only)")
    if data is not None and not data.is_file():
        raise typer.BadParameter(f"{data} not found", param_hint="--data")
    extra = {"state-dir": str(state_dir.resolve())} if state_dir else {}
    if threads:
        extra["threads"] = threads
    env = launch.flower_env(flwr_home)
    if not resident:
        _exec(launch.supernode_command(superlink, client_id, port, data, root_cert, auth_key, extra), env, dry_run)
        return
    socket = Path("/tmp/fedtune-node-XXXXXXXX/trainer.sock") if dry_run else resident_trainer.new_socket_path()
    extra["trainer-socket"] = str(socket)
    trainer_cmd = resident_trainer.command(socket)
    cmd = launch.supernode_command(superlink, client_id, port, data, root_cert, auth_key, extra)
    _show(trainer_cmd)
    if dry_run:
        _show(cmd)
        return
    with _background(trainer_cmd, env) as trainer:  # it removes its socket directory when it stops
        resident_trainer.wait_ready(trainer, socket)
        _exec(cmd, env, dry_run=False)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (as for `fedtune run`).")],
    federation: Annotated[str, typer.Option(
        help="A SuperLink connection in $FLWR_HOME/config.toml: 'local' = Flower's simulation engine on this "
        "machine (one simulated SuperNode per client); 'fedtune' = the SuperLink of `fedtune flower superlink`.")
    ] = "local",
    set: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="Override a config key, e.g. --set federation.rounds=3.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run directory from its last checkpoint.")] = False,
    min_replies: Annotated[int, typer.Option(help="Sampled clients that must reply for a round to count "
                                             "(0 = all).")] = 0,
    round_timeout: Annotated[float, typer.Option(help="Seconds to wait for a round's replies (0 = until each node "
                                                 "replied or went offline).")] = 0.0,
    node_wait: Annotated[float, typer.Option(help="Seconds to wait at the start for one SuperNode per client.")] = 120.0,
    cpus_per_client: Annotated[int, typer.Option(min=1, help="Simulation engine only: CPU cores per simulated "
                                                 "client (sets how many train at once).")] = 1,
    gpus_per_client: Annotated[Optional[float], typer.Option(min=0, help="Simulation engine only: GPUs per "
                                                             "simulated client (0.5 = two per GPU); default 1 when "
                                                             "model.device is a GPU here, else 0.")] = None,
    flwr_home: HomeOpt = launch.DEFAULT_HOME,
    dry_run: DryOpt = False,
):
    """Launch a fedtune run on Flower (`flwr run`) and stream its log until it ends.

    The config travels to the SuperLink inside the app bundle; the run directory (metrics.jsonl, checkpoints/, adapter/, summary.json) is written where the SuperLink runs, at the config's output.dir (made absolute here for the local simulation engine). Exits with 1 when the run failed.
    """
    from fedtune.config import load_config
    from fedtune.models.device import resolve_device

    overrides = list(set or [])
    cfg = load_config(config, overrides)  # fail here, with fedtune's message, not inside Flower
    local = federation == "local"
    if local:
        overrides.append(f"output.dir={cfg.run_dir().resolve()}")
    app_dir = launch.write_app(config, Path(flwr_home) / "apps-src" / config.stem)
    run_config = {"set": "; ".join(overrides), "resume": resume, "min-replies": min_replies,
                  "round-timeout": round_timeout, "node-wait": node_wait}
    fed_config = None
    if local:  # Ray's resources per ClientApp: one GPU each by default where the model runs on one
        gpus = gpus_per_client if gpus_per_client is not None else float(resolve_device(cfg.model.device).type == "cuda")
        fed_config = {"num-supernodes": cfg.federation.num_clients, "client-resources-num-cpus": cpus_per_client,
                      "client-resources-num-gpus": gpus}
    env = launch.flower_env(flwr_home)
    if not (Path(flwr_home) / "config.toml").exists():
        launch.write_connection(flwr_home, CONNECTION, "127.0.0.1:9093")  # also creates the default 'local'
    cmd = launch.flwr_run_command(app_dir.resolve(), federation, run_config, fed_config)
    console.print(f"run directory: {cfg.run_dir().resolve() if local else cfg.run_dir()} "
                  f"({'this machine' if local else 'on the SuperLink machine'})")
    _show(cmd)
    if dry_run:
        return
    raise typer.Exit(_stream_run(cmd, env))


def _stream_run(cmd: list[str], env: dict) -> int:
    """Run `flwr run --stream`, echoing its output. flwr exits 0 even when the ServerApp
    failed, so the log is watched for Flower's failure line and 1 returned then."""
    failed = False
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            failed = failed or "ServerApp raised an exception" in line
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        console.print("stopped streaming; the run goes on on the SuperLink (`flwr stop <run-id>` ends it)")
        return 130
    return code or (1 if failed else 0)


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
