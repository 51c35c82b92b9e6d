"""`fedge report`: a run directory as an HTML page and a Markdown page."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedge.cli.common import add_command
from fedge.extras import require_reports
from fedge.reports.run import REPORT_DIR


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "report",
        help="Write a run's report: one self-contained HTML page and Markdown with PNGs.",
        description="Write the report of a run directory: accuracy and loss per round, "
        "clients' label distribution, per-class recall and confusion matrix, bytes per "
        "round, privacy spent and exported artifacts where present.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="A run directory `fedge simulate` wrote.")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help=f"Where to write the report (default: RUN_DIR/{REPORT_DIR}).",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_reports("`fedge report`")
    from fedge.reports.content import run_document
    from fedge.reports.output import write_report
    from fedge.reports.run import RunData

    data = RunData.load(args.run_dir)
    out = Path(args.out) if args.out else data.path / REPORT_DIR
    written = write_report(run_document(data), out)
    print(f"report written to {out}/")
    print(f"  html:     {written.html}  (self-contained: open it in a browser)")
    print(f"  markdown: {written.markdown}  (+ {len(written.images)} PNG files beside it)")
    return 0
