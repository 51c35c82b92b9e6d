"""Pieces several sub-commands share: config options, progress, errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fedge.config import ResolvedConfig, parse_set_items, resolve


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="TOML file with config keys (flat, or a [tool.flwr.app.config] table).",
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


@contextmanager
def rich_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar; yields a function that advances it by n."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
