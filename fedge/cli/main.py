"""The `fedge` command line."""

from __future__ import annotations

import argparse
import sys

from fedge import __version__
from fedge.cli import certs, compare, config_cmd, export, health, predict, report, simulate
from fedge.cli.common import HelpFormatter
from fedge.errors import FedgeError

SUBCOMMANDS = (simulate, export, predict, report, compare, config_cmd, certs, health)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedge",
        description="Federated fine-tuning of frozen-backbone heads, from simulation to the edge.",
        epilog="Run `fedge COMMAND --help` for a command's options and their defaults.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fedge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FedgeError as e:
        print(f"fedge: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
