"""`fedge config`: the keys, their defaults, and a run's resolved values."""

from __future__ import annotations

import argparse

import tomli_w

from fedge.cli.common import add_config_options, resolve_from_args
from fedge.config import FedgeConfig, key_of, options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="Show configuration keys and resolved values.")
    csub = p.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser(
        "show",
        help="Print the resolved configuration and where each value came from.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_options(show)
    show.set_defaults(func=run_show)
    keys = csub.add_parser("keys", help="List every key with its default and meaning.")
    keys.set_defaults(func=run_keys)
    toml = csub.add_parser("toml", help="Print the defaults as a [tool.flwr.app.config] table.")
    toml.set_defaults(func=run_toml)


def run_show(args: argparse.Namespace) -> int:
    resolved = resolve_from_args(args)
    values = resolved.config.to_run_config()
    width = max(map(len, values))
    for key, value in values.items():
        print(f"{key:<{width}} = {value!r:<28} # {resolved.sources[key]}")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    group = None
    for f in options():
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            print(f"\n[{group}]")
        choices = f" ({'|'.join(f.metadata['choices'])})" if f.metadata["choices"] else ""
        print(f"  {key_of(f)} = {f.default!r}{choices}\n      {f.metadata['help']}")
    return 0


def run_toml(args: argparse.Namespace) -> int:
    print("[tool.flwr.app.config]")
    print(tomli_w.dumps(FedgeConfig().to_run_config()), end="")
    return 0
