"""`fedge compare`: several runs in one plot and one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedge.cli.common import add_command
from fedge.extras import require_reports

DEFAULT_OUT = "fedge-compare"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "compare",
        help="Compare runs: accuracy per round in one plot, final figures in one table.",
        description="Compare run directories (for example FedAvg vs FedProx): write a plot "
        "of accuracy per round with one line per run and a table of final and best "
        "accuracy, rounds, bytes per client round, wall time and strategy.",
    )
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="Run directories to compare.")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help="Where to write compare.html, compare.md and the plot.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_reports("`fedge compare`")
    from rich.console import Console
    from rich.table import Table as RichTable

    from fedge.reports.compare import compare_document
    from fedge.reports.output import write_report
    from fedge.reports.run import RunData

    runs = [RunData.load(p) for p in args.run_dirs]
    doc = compare_document(runs)
    table = doc.table("runs")
    shown = RichTable(*table.headers)
    for row in table.rows:
        shown.add_row(*row)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 140))
    console.print(shown)
    written = write_report(doc, Path(args.out), stem="compare")
    print(f"comparison written to {written.html} and {written.markdown}")
    return 0
