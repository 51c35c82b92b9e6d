"""`fedge simulate`: a federation of simulated clients on this machine."""

from __future__ import annotations

import argparse
import json

from fedge import rundir
from fedge.cli.common import add_config_options, resolve_from_args, rich_progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="Run a federation of simulated clients on this machine.",
        description="Run a Flower federation of simulated clients that fine-tune the "
        "head of a frozen backbone, and write a run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_options(p)
    p.add_argument(
        "--run-dir", metavar="DIR", default=None, help="Run directory (default: runs/<timestamp>)."
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulations.runner import run_simulation

    extra = {"run-dir": args.run_dir} if args.run_dir else {}
    cfg = resolve_from_args(args, extra).config
    run_path = run_simulation(cfg, progress=rich_progress)
    summary = rundir.read_summary(run_path)
    keys = (
        "final_accuracy",
        "best_accuracy",
        "rounds",
        "wall_seconds",
        "bytes_up_per_client_round",
    )
    print(f"run dir: {run_path}")
    print(json.dumps({k: summary.get(k) for k in keys}))
    return 0
