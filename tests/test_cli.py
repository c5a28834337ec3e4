"""The CLI contract: one-line errors, exit code 2, no traceback unless --debug."""

import subprocess
import sys

from typer.testing import CliRunner

from fedtune.commands.cli import app

runner = CliRunner()


def test_unknown_key_exit_2_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("federation:\n  num_client: 3\n")
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert "unknown key 'federation.num_client'" in err and "did you mean 'federation.num_clients'" in err
    assert "Traceback" not in result.output + result.stderr


def test_missing_config_file(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "config file not found" in result.stderr


def test_model_that_cannot_be_loaded(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  name: {tmp_path}/no-such-model\noutput:\n  dir: {tmp_path}/run\n")
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 2
    assert "model.name" in result.stderr and "no-such-model" in result.stderr


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fedtune.commands.cli", "run", str(tmp_path / "none.yaml"), "--debug"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_help_teaches():
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for word in ("--set", "--resume", "--output", "metrics.jsonl"):
        assert word in result.output


def test_ls_prints_the_catalog_from_the_registries():
    from fedtune.algorithms import ALGORITHMS

    result = runner.invoke(app, ["ls", "algorithms"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ALGORITHMS.names():
        assert name in result.output
    assert "mu=0.01" in result.output  # FedProx's parameter with its default
    everything = runner.invoke(app, ["ls"], env={"COLUMNS": "200"})
    for kind in ("objectives", "reducers", "adapters", "ops", "metrics"):
        assert f"{kind} — set with" in everything.output
    assert "near_dedup" in everything.output and "beta_prime=1.0" in everything.output
    bad = runner.invoke(app, ["ls", "strategies"])
    assert bad.exit_code == 2 and "unknown kind 'strategies'" in bad.stderr
