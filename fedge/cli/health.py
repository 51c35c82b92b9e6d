"""`fedge health`: exit 0 when a SuperLink or SuperNode answers its health check."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fedge.cli.common import HelpFormatter
from fedge.deploy.health import LOCAL_URLS, first_healthy


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="Check that a SuperLink or SuperNode is up (GET /health); for container health "
        "checks.",
        description="Exit 0 when one of the URLs answers GET /health with 200. Without URLs: "
        "$FEDGE_HEALTH_URL, else the local SuperLink (port 8000, HTTPS or HTTP) and "
        "SuperNode (port 9094) defaults.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="e.g. https://coord:8000/health")
    p.add_argument("--ca", type=Path, default=None, help="CA certificate to verify HTTPS with.")
    p.add_argument("--timeout", type=float, default=5.0, help="Seconds per URL.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env_url = os.environ.get("FEDGE_HEALTH_URL")
    urls = args.urls or ([env_url] if env_url else list(LOCAL_URLS))
    healthy, probes = first_healthy(urls, args.ca, args.timeout)
    if healthy is not None:
        print(f"healthy: {healthy.url} ({healthy.detail})")
        return 0
    for p in probes:
        print(f"unhealthy: {p.url}: {p.detail}", file=sys.stderr)
    return 1
