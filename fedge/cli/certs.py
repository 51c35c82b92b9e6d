"""`fedge certs`: TLS credentials for the SuperLink and keys for the SuperNodes."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedge.cli.common import HelpFormatter
from fedge.deploy import commands
from fedge.deploy.certs import CA_CERT, CertsReport, write_certs

CONNECTION = "fedge"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "certs",
        help="Make a CA, the SuperLink's TLS certificate and SuperNode key pairs.",
        description="Write a certificate authority and a TLS certificate for the SuperLink "
        "(valid for 127.0.0.1, localhost and every --host), and one ECDSA key pair per "
        "SuperNode for node authentication, in the formats Flower expects. Existing files "
        "are kept unless --force; run it again with new names to add SuperNodes.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("directory", metavar="DIR", type=Path, help="Where to write the files.")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="A host name or IP address SuperNodes and `flwr` use to reach the SuperLink "
        "(repeat for several).",
    )
    p.add_argument(
        "--nodes",
        nargs="+",
        default=[],
        metavar="N_OR_NAME",
        help="SuperNode keys to make: a number N (node-1..node-N) or names (hospital-a ...).",
    )
    p.add_argument("--days", type=int, default=365, help="Validity of the certificates.")
    p.add_argument(
        "--port",
        type=int,
        default=commands.DEFAULT_PORT,
        help="The SuperLink's port, for the commands printed at the end.",
    )
    p.add_argument("--force", action="store_true", help="Overwrite existing files.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = write_certs(args.directory, args.host, args.nodes, days=args.days, force=args.force)
    for path in report.written:
        print(f"wrote {path}")
    for path in report.kept:
        print(f"kept  {path} (exists; --force to replace)")
    print(f"\nThe SuperLink's certificate is valid for: {', '.join(report.hosts)}")
    print(next_steps(report, args.port))
    return 0


def next_steps(report: CertsReport, port: int) -> str:
    """What the coordinator and each hospital do with the files, as commands."""
    d = report.directory
    host = next((h for h in report.hosts if h not in ("127.0.0.1", "localhost")), "127.0.0.1")
    address = f"{host}:{port}"
    superlink = commands.superlink_argv(d, port=port, database=d.parent / "superlink.db")
    lines = [
        "",
        "Next steps (README, 'Run a real federation'):",
        "",
        "1. Coordinator: keep ca.key offline; start the SuperLink with TLS and node auth:",
        f"     {commands.shell(superlink)}",
        "",
        "2. Coordinator: add this connection to $FLWR_HOME/config.toml (default ~/.flwr):",
        *(
            f"     {line}"
            for line in commands.connection_toml(CONNECTION, address, d / CA_CERT).splitlines()
        ),
    ]
    if report.node_keys:
        lines += ["", "3. Coordinator: allow each SuperNode's public key:"]
        for name, (_, public) in report.node_keys.items():
            lines.append(f"     {commands.shell(commands.register_argv(public, CONNECTION, name))}")
        lines += [
            "",
            f"4. Each hospital gets {CA_CERT} and its own nodes/NAME.key (never the other "
            "files), and starts one SuperNode on its own data:",
        ]
        for name, (private, _) in report.node_keys.items():
            argv = commands.supernode_argv(
                address, f"/data/{name}", ca_cert=Path(CA_CERT), private_key=Path(private.name)
            )
            lines.append(f"     {commands.shell(argv)}")
    lines += [
        "",
        "5. Coordinator: run the app (absolute paths; resume=true continues a run-dir):",
        "     "
        + commands.shell(commands.run_argv(".", CONNECTION, {"run-dir": "/srv/fedge/runs/run-1"})),
    ]
    return "\n".join(lines)
