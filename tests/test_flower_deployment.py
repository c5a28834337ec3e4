"""The Flower deployment engine on loopback: a real SuperLink and two SuperNodes as processes,
`flwr run`, and the same result as the embedded engine. Then the same with TLS and SuperNode
authentication (keys and certificates made here with `cryptography`)."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

from flower_harness import (
    Federation,
    assert_adapters_close,
    embedded_run,
    final_adapter,
    read_rows,
    tiny_config,
)

from fedtune.flower.deploy.launch import Tls


def test_deployment_matches_embedded_engine(tmp_path):
    """Each site trains in its resident trainer (as `fedtune flower supernode` runs it), which
    loads the base model once for both rounds."""
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "flower-run")
    with Federation(tmp_path) as fed:
        fed.add_node(0, resident=True)
        fed.add_node(1, resident=True)
        out = fed.run(config)
        trainer_logs = [p.text() for p in fed.procs if p.name.endswith("-trainer")]
    run = tmp_path / "flower-run"
    assert "run finished" in out, out[-3000:]
    for text in trainer_logs:
        assert text.count("loading base model") == 1, text[-3000:]
        assert "round 0 in" in text and "round 1 in" in text, text[-3000:]
    reference = embedded_run(config, tmp_path / "embedded-run")
    assert_adapters_close(final_adapter(run), final_adapter(reference))

    rows, ref_rows = read_rows(run), read_rows(reference)
    assert [r["round"] for r in rows] == [0, 1]
    for row, ref in zip(rows, ref_rows):
        assert set(row["train"]) == {"0", "1"} and row["failed"] == {} and row["rejected"] == {}
        assert abs(row["train_loss"] - ref["train_loss"]) < 1e-4
        # Bytes come from the ArrayRecords on the wire: at least the raw tensors, both ways.
        assert row["bytes_down"] >= ref["bytes_down"] and row["bytes_up"] >= ref["bytes_up"]
        assert row["bytes_down"] < 1.1 * ref["bytes_down"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["engine"] == "flower" and summary["final"]["global"]["n"] > 0
    assert (run / "checkpoints" / "LATEST").read_text().strip() == "round_00001"


# ---------------------------------------------------------------- TLS and node authentication

def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_certificates(out: Path) -> Tls:
    """A CA, and a SuperLink certificate for localhost/127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    pem_key = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,  # noqa: E731
                                        serialization.NoEncryption())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedtune test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls = Tls.from_dir(out)
    _write_pem(tls.ca, ca.public_bytes(serialization.Encoding.PEM))
    _write_pem(tls.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write_pem(tls.key, pem_key(key))
    return tls


def make_node_key(out: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode key pair in OpenSSH format (ECDSA P-384), as Flower expects."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private = _write_pem(out / name, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                        serialization.NoEncryption()))
    public = _write_pem(out / f"{name}.pub", key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                           serialization.PublicFormat.OpenSSH))
    return private, public


def test_tls_and_node_authentication_and_a_nonfinite_update_is_rejected(tmp_path):
    """Over TLS with node authentication: registered nodes train, an unregistered key is refused,
    and the update of a node that sends NaN is rejected and the node named in metrics.jsonl."""
    tls = make_certificates(tmp_path / "certs")
    keys = {name: make_node_key(tmp_path, name) for name in ("node0", "node1", "intruder")}
    config = tiny_config(tmp_path / "tiny.yaml", tmp_path / "tls-run", **{"federation.rounds": 1})
    with Federation(tmp_path, tls=tls, node_auth=True) as fed:
        for name in ("node0", "node1"):
            done = fed.flwr("supernode", "register", str(keys[name][1]), "test")
            assert done.returncode == 0, done.stdout + done.stderr
        intruder = fed.add_node(0, private_key=keys["intruder"][0], name="intruder")
        fed.add_node(0, private_key=keys["node0"][0])
        node1 = fed.add_node(1, private_key=keys["node1"][0], **{"fault-nonfinite": True})
        node1.wait_for("SuperNode ID:")
        out = fed.run(config)
        node1_id = node1.text().split("SuperNode ID:")[1].split()[0]
        intruder_log = intruder.text()
    run = tmp_path / "tls-run"
    assert "run finished" in out, out[-3000:]
    assert "SuperNode ID" not in intruder_log, intruder_log[-2000:]  # never admitted
    (row,) = read_rows(run)
    assert set(row["train"]) == {"0"}
    reason = row["rejected"]["1"]
    assert f"node {node1_id}" in reason and "non-finite" in reason, reason
    assert json.loads((run / "summary.json").read_text())["rejected_updates"] == 1
