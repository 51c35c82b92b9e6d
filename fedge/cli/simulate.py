"""`fedge simulate`: a federation of simulated clients on this machine."""

from __future__ import annotations

import argparse

from fedge import rundir
from fedge.cli.common import (
    add_command,
    add_config_options,
    config_keys_epilog,
    resolve_from_args,
)
from fedge.cli.display import LOG_FORMATS, make_display
from fedge.extras import require_torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "simulate",
        help="Run a federation of simulated clients on this machine.",
        description="Run a Flower federation of simulated clients that fine-tune the "
        "head of a frozen backbone, and write a run directory.",
        epilog=config_keys_epilog(),
    )
    add_config_options(p)
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        default=None,
        help="Run directory (default: runs/<timestamp>-<strategy>).",
    )
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text: progress bars and a table row per round; json: one JSON object per "
        "line on stdout (events log, progress, round, summary) for scripts.",
    )
    shown.add_argument(
        "--quiet",
        action="store_true",
        help="Show nothing while running; print only the run directory at the end.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_torch("`fedge simulate`")
    from simulations.runner import run_simulation

    extra = {"run-dir": args.run_dir} if args.run_dir else {}
    cfg = resolve_from_args(args, extra).config
    display = make_display(args.log_format, args.quiet)
    run_path = run_simulation(cfg, display=display)
    display.finished(run_path, rundir.read_summary(run_path))
    return 0
