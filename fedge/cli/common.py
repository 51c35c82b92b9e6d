"""Pieces several sub-commands share: config options, help format."""

from __future__ import annotations

import argparse
import textwrap

from fedge.config import ResolvedConfig, key_of, options, parse_set_items, resolve


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, in words people read
    (``none``, ``off``) unless the help already states it; descriptions keep
    their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or "(default" in text or action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        words = {None: "none", False: "off", True: "on"}
        default = action.default
        if isinstance(default, bool) or default is None:
            shown = words[default]
        elif default == []:
            shown = "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A sub-command parser whose help lists every option with its default."""
    return sub.add_parser(
        name,
        help=help,
        description=textwrap.fill(description or help, width=78),
        epilog=epilog,
        formatter_class=HelpFormatter,
    )


def _shown(value: object) -> str:
    """A default as one would type it after ``--set KEY=``."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "''"


def config_keys_epilog() -> str:
    """Every config key with its default, by group, for a command's help."""
    groups: dict[str, list[str]] = {}
    for f in options():
        groups.setdefault(f.metadata["group"], []).append(f"{key_of(f)}={_shown(f.default)}")
    lines = ["config keys, default values (--set KEY=VALUE; `fedge config keys` explains each):"]
    for group, items in groups.items():
        lines += textwrap.wrap(
            " ".join(items),
            width=78,
            initial_indent=f"  {group + ':':<12}",
            subsequent_indent=" " * 14,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="TOML file with config keys (flat, or a [tool.flwr.app.config] table); "
        "--set applies on top.",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="Override config keys, e.g. --set num-rounds=5 lr=0.01 (see `fedge config keys`).",
    )


def resolve_from_args(
    args: argparse.Namespace, extra: dict[str, str] | None = None
) -> ResolvedConfig:
    overrides = parse_set_items(args.set)
    overrides.update(extra or {})
    return resolve(args.config, overrides)
