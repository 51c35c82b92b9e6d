"""Flower 1.41's own deployment commands, as fedge runs and documents them.

One place builds the command lines that ``fedge certs`` prints, the README
shows and the deployment tests run, so what users are told is what is tested.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from fedge.deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY

DEFAULT_PORT = 8000  # flower-superlink's default: Fleet, Control and Runtime APIs on one port
DEFAULT_NODE_PORT = 9094  # flower-supernode's local Runtime API port


def superlink_argv(
    certs: Path,
    *,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    database: Path | None = None,
    node_auth: bool = True,
    program: str = "flower-superlink",
) -> list[str]:
    """The SuperLink with TLS and (by default) SuperNode authentication.

    ``--disable-runtime-dependency-installation``: fedge is installed beside the
    SuperLink already, so Flower must not ``uv sync`` the app for every run.
    """
    argv = [
        program,
        "--host",
        host,
        "--port",
        str(port),
        "--ssl-ca-certfile",
        str(certs / CA_CERT),
        "--ssl-certfile",
        str(certs / SERVER_CERT),
        "--ssl-keyfile",
        str(certs / SERVER_KEY),
        "--disable-runtime-dependency-installation",
    ]
    if database is not None:
        argv += ["--database", str(database)]
    if node_auth:
        argv.append("--enable-supernode-auth")
    return argv


def node_config(data_path: str | Path, **extra: str) -> str:
    """A ``--node-config`` value: the SuperNode's own ``data-path`` (and more keys)."""
    items = {"data-path": str(data_path), **extra}
    return " ".join(f"{k}={_toml_string(v)}" for k, v in items.items())


def _toml_string(value: str) -> str:
    if "'" in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"'{value}'"


def supernode_argv(
    superlink: str,
    data_path: str | Path,
    *,
    ca_cert: Path | None,
    private_key: Path | None = None,
    port: int = DEFAULT_NODE_PORT,
    max_retries: int | None = None,
    program: str = "flower-supernode",
) -> list[str]:
    """A SuperNode that trains on ``data_path``; TLS when ``ca_cert`` is given.

    ``port`` is the SuperNode's local Runtime API (one per SuperNode on a host).
    """
    argv = [program, "--superlink", superlink, "--port", str(port)]
    argv += ["--root-certificates", str(ca_cert)] if ca_cert is not None else ["--insecure"]
    if private_key is not None:
        argv += ["--auth-supernode-private-key", str(private_key)]
    if max_retries is not None:
        argv += ["--max-retries", str(max_retries)]
    argv += ["--node-config", node_config(data_path)]
    return argv


def register_argv(public_key: Path, connection: str, name: str, program: str = "flwr") -> list[str]:
    """Allow a SuperNode's key on the SuperLink (through its Control API)."""
    return [program, "supernode", "register", str(public_key), connection, "--name", name]


def connection_toml(name: str, address: str, ca_cert: Path) -> str:
    """The ``[superlink.NAME]`` entry of ``$FLWR_HOME/config.toml`` for ``flwr``."""
    return f'[superlink.{name}]\naddress = "{address}"\nroot-certificates = "{ca_cert}"\n'


def run_argv(
    app: Path | str,
    connection: str,
    run_config: Mapping[str, object] | Path | None = None,
    *,
    stream: bool = True,
    program: str = "flwr",
) -> list[str]:
    """``flwr run APP CONNECTION`` with run-config overrides (a TOML file or pairs)."""
    argv = [program, "run", str(app), connection]
    if stream:
        argv.append("--stream")
    if isinstance(run_config, Path):
        argv += ["--run-config", str(run_config)]
    elif run_config:
        argv += ["--run-config", " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())]
    return argv


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _toml_string(str(value))


def shell(argv: Sequence[str]) -> str:
    """A command line to paste into a shell (TOML pairs in double quotes)."""
    return " ".join(_quote(a) for a in argv)


def _quote(arg: str) -> str:
    if "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)
