"""`fedge config`: the keys, their defaults, and a run's resolved values."""

from __future__ import annotations

import argparse

import tomli_w

from fedge.cli.common import (
    add_command,
    add_config_options,
    config_keys_epilog,
    resolve_from_args,
)
from fedge.config import FedgeConfig, key_of, options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "config", help="Show configuration keys and resolved values.")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    show = add_command(
        csub,
        "show",
        help="Print the resolved configuration and where each value came from.",
        epilog=config_keys_epilog(),
    )
    add_config_options(show)
    show.set_defaults(func=run_show)
    keys = add_command(csub, "keys", help="List every key with its default and meaning.")
    keys.set_defaults(func=run_keys)
    toml = add_command(csub, "toml", help="Print the defaults as a [tool.flwr.app.config] table.")
    toml.set_defaults(func=run_toml)


def run_show(args: argparse.Namespace) -> int:
    """The resolved values as TOML (usable with --config), each line commented
    with where its value came from: default, file PATH or --set."""
    resolved = resolve_from_args(args)
    values = resolved.config.to_run_config()
    lines = {key: tomli_w.dumps({key: value}).strip() for key, value in values.items()}
    width = max(map(len, lines.values()))
    changed = sum(source != "default" for source in resolved.sources.values())
    print(f"# resolved configuration: {changed} of {len(values)} keys set by a file or --set")
    group = None
    for f in options():
        key = key_of(f)
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            print(f"\n# [{group}]")
        print(f"{lines[key]:<{width}}  # {resolved.sources[key]}")
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
