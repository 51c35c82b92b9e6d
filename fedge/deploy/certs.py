"""Credentials for a real federation, in the formats Flower 1.41 expects.

* A certificate authority (``ca.crt``, ``ca.key``) and the SuperLink's TLS
  certificate signed by it (``server.pem``, ``server.key``). The certificate
  names ``127.0.0.1`` and ``localhost`` (the SuperLink's own helper process
  dials ``127.0.0.1``) plus every host name or IP address the SuperNodes and
  the ``flwr`` CLI use to reach it.
* One key pair per SuperNode for node authentication: ECDSA P-384, the private
  key in OpenSSH format (``nodes/NAME.key``), the public key as one OpenSSH line
  (``nodes/NAME.pub``) for ``flwr supernode register``.

Nothing that exists is overwritten unless asked (``force``): running it again
with new node names adds their keys and keeps everything else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedge.errors import FedgeError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
NODES_DIR = "nodes"
ALWAYS_HOSTS = ("127.0.0.1", "localhost")


class CertsError(FedgeError, ValueError):
    """Credentials that cannot be written as asked."""


@dataclass
class CertsReport:
    """What one call wrote and what it left as it was."""

    directory: Path
    hosts: list[str]
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    node_keys: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def node_key_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """(private key, public key) of the SuperNode ``name``."""
    base = Path(directory) / NODES_DIR
    return base / f"{name}.key", base / f"{name}.pub"


def node_names(spec: Sequence[str]) -> list[str]:
    """``["3"]`` -> node-1..node-3; otherwise the names themselves."""
    if len(spec) == 1 and spec[0].isdigit():
        return [f"node-{i}" for i in range(1, int(spec[0]) + 1)]
    bad = [n for n in spec if not n or "/" in n or n.startswith(".") or n.isdigit()]
    if bad:
        raise CertsError(
            f"node names {bad} cannot be file names; use names like hospital-a "
            "(or a single number N for node-1..node-N)."
        )
    if len(set(spec)) != len(spec):
        raise CertsError(f"node names repeat: {list(spec)}; give each SuperNode its own name.")
    return list(spec)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_ca(days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fedge federation CA"))
        .issuer_name(_name("fedge federation CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: Sequence[str], days: int
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_node_key(name: str) -> tuple[bytes, bytes]:
    """(OpenSSH private key, OpenSSH public key line) of a SuperNode."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + f" fedge-{name}\n".encode()


def certificate_hosts(path: Path) -> list[str]:
    """The host names and IP addresses a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in sans.get_values_for_type(x509.DNSName)] + [
        str(v) for v in sans.get_values_for_type(x509.IPAddress)
    ]


def _normalized_hosts(hosts: Sequence[str]) -> list[str]:
    out: list[str] = []
    for host in [*ALWAYS_HOSTS, *hosts]:
        h = host.strip()
        if not h or (":" in h and not _is_ip(h)):
            raise CertsError(
                f"--host {host!r} is not a host name or IP address (give it without a "
                "port, e.g. --host coordinator.example.org --host 10.0.0.5)."
            )
        if h not in out:
            out.append(h)
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def write_certs(
    directory: str | Path,
    hosts: Sequence[str] = (),
    nodes: Sequence[str] = (),
    *,
    days: int = 365,
    force: bool = False,
) -> CertsReport:
    """Write what is missing under ``directory``; with ``force``, rewrite it all.

    Refuses, changing nothing, when what exists cannot serve the request: a
    server certificate that does not name a requested host, or a server
    certificate without the CA key that signed it.
    """
    if days < 1:
        raise CertsError(f"--days must be at least 1, got {days}.")
    out = Path(directory).expanduser().resolve()
    all_hosts = _normalized_hosts(hosts)
    names = node_names(nodes) if nodes else []
    report = CertsReport(out, all_hosts)
    ca_paths = [out / CA_CERT, out / CA_KEY]
    server_paths = [out / SERVER_CERT, out / SERVER_KEY]

    ca_exists = [p.exists() for p in ca_paths]
    server_exists = [p.exists() for p in server_paths]
    if not force:
        if any(ca_exists) and not all(ca_exists):
            present = ", ".join(p.name for p in ca_paths if p.exists())
            raise CertsError(
                f"{out} holds only part of the CA ({present}); "
                "restore the missing file, or pass --force to make a new CA (then every "
                "SuperNode needs the new ca.crt)."
            )
        if any(server_exists) and not all(server_exists):
            raise CertsError(
                f"{out} holds only part of the server certificate; restore it or pass --force."
            )
        if all(server_exists):
            missing = [h for h in all_hosts if h not in certificate_hosts(out / SERVER_CERT)]
            if missing:
                raise CertsError(
                    f"{out / SERVER_CERT} does not name {missing}; pass --force to issue new "
                    "credentials for these hosts (then every SuperNode needs the new ca.crt)."
                )
        if all(server_exists) and not all(ca_exists):
            raise CertsError(
                f"{out / SERVER_CERT} exists without the CA that signed it; pass --force to "
                "make a new CA and server certificate."
            )

        for name in names:
            pair = node_key_paths(out, name)
            if any(p.exists() for p in pair) and not all(p.exists() for p in pair):
                raise CertsError(
                    f"only half of {name}'s key pair exists in {pair[0].parent}; restore it "
                    "or pass --force to make a new pair (then register the new .pub)."
                )

    if force or not all(ca_exists):
        ca_key, ca_cert = make_ca(days)
        _write(out / CA_KEY, _pem_key(ca_key), private=True)
        _write(out / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        report.written += ca_paths
        new_ca = True
    else:
        report.kept += ca_paths
        new_ca = False

    if force or new_ca or not all(server_exists):
        ca_key_loaded = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), None)
        ca_cert_loaded = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
        assert isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey)
        key, cert = make_server_cert(ca_key_loaded, ca_cert_loaded, all_hosts, days)
        _write(out / SERVER_KEY, _pem_key(key), private=True)
        _write(out / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM), private=False)
        report.written += server_paths
    else:
        report.kept += server_paths

    for name in names:
        private_path, public_path = node_key_paths(out, name)
        report.node_keys[name] = (private_path, public_path)
        if not force and private_path.exists() and public_path.exists():
            report.kept += [private_path, public_path]
            continue
        private, public = make_node_key(name)
        _write(private_path, private, private=True)
        _write(public_path, public, private=False)
        report.written += [private_path, public_path]
    report.hosts = certificate_hosts(out / SERVER_CERT)
    return report
