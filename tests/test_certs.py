"""`fedge certs`: a CA, the SuperLink's certificate and SuperNode keys Flower accepts."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_ssh_private_key,
    load_ssh_public_key,
)

from fedge.deploy.certs import CertsError, certificate_hosts, node_key_paths, write_certs


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_certificate_is_signed_by_the_ca_for_loopback_and_given_hosts(tmp_path):
    write_certs(tmp_path, hosts=["coordinator.example.org", "10.0.0.5"])
    ca, server = _cert(tmp_path / "ca.crt"), _cert(tmp_path / "server.pem")
    server.verify_directly_issued_by(ca)  # raises if not
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "coordinator.example.org"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.5"),
    }
    key = load_pem_private_key((tmp_path / "server.key").read_bytes(), None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()


def test_node_keys_are_openssh_ecdsa_p384_pairs(tmp_path):
    report = write_certs(tmp_path, nodes=["hospital-a", "hospital-b"])
    assert set(report.node_keys) == {"hospital-a", "hospital-b"}
    for name in ("hospital-a", "hospital-b"):
        private_path, public_path = node_key_paths(tmp_path, name)
        private = load_ssh_private_key(private_path.read_bytes(), None)
        public = load_ssh_public_key(public_path.read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert private.curve.name == "secp384r1"
        assert private.public_key().public_numbers() == public.public_numbers()
        assert public_path.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert write_certs(tmp_path, nodes=["2"]).node_keys.keys() == {"node-1", "node-2"}


def test_private_keys_are_readable_by_their_owner_only(tmp_path):
    write_certs(tmp_path, nodes=["1"])
    for path in (
        tmp_path / "ca.key",
        tmp_path / "server.key",
        node_key_paths(tmp_path, "node-1")[0],
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_existing_files_are_kept_and_new_nodes_added(tmp_path):
    write_certs(tmp_path, hosts=["coord"], nodes=["hospital-a"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    report = write_certs(tmp_path, nodes=["hospital-a", "hospital-b"])
    assert all(p.read_bytes() == data for p, data in before.items())
    assert [p.name for p in report.written] == ["hospital-b.key", "hospital-b.pub"]
    assert "coord" in report.hosts  # what the kept certificate is valid for


def test_a_host_the_certificate_lacks_is_refused_without_force(tmp_path):
    write_certs(tmp_path)
    ca = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(CertsError, match="does not name.*other.example.org.*--force"):
        write_certs(tmp_path, hosts=["other.example.org"])
    assert (tmp_path / "ca.crt").read_bytes() == ca
    write_certs(tmp_path, hosts=["other.example.org"], force=True)
    assert (tmp_path / "ca.crt").read_bytes() != ca
    assert "other.example.org" in certificate_hosts(tmp_path / "server.pem")


def test_half_a_ca_or_a_bad_name_is_refused(tmp_path):
    write_certs(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(CertsError, match="only part of the CA"):
        write_certs(tmp_path)
    with pytest.raises(CertsError, match="cannot be file names"):
        write_certs(tmp_path / "other", nodes=["../escape"])
    with pytest.raises(CertsError, match="not a host name"):
        write_certs(tmp_path / "other", hosts=["coord:8000"])


def test_cli_prints_what_it_wrote_and_the_next_commands(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fedge.cli.main", "certs", str(tmp_path / "certs"),
         "--host", "coord.example.org", "--nodes", "hospital-a"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"wrote {tmp_path / 'certs' / 'ca.crt'}" in out
    assert "flower-superlink" in out and "--enable-supernode-auth" in out
    assert "flwr supernode register" in out and "hospital-a.pub" in out
    assert "flower-supernode --superlink coord.example.org:8000" in out
    assert "data-path='/data/hospital-a'" in out
    again = subprocess.run(
        [sys.executable, "-m", "fedge.cli.main", "certs", str(tmp_path / "certs"),
         "--host", "elsewhere.org"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and "--force" in again.stderr
