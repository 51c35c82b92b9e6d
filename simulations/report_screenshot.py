"""Screenshot a run's HTML report in headless Chromium, to look at it the way a
user will (acceptance check of `fedge report`).

    python -m simulations.report_screenshot RUN_DIR [--out report.png]

Writes the report first when RUN_DIR/report/report.html is missing. Needs a
Chromium binary (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 6000) -> Path:
    """Render ``html`` (a local file) in headless Chromium and save a PNG.

    The browser gets a fresh profile and no network features, so a page that
    needed anything from the network would show it as missing."""
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BROWSERS)})")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedge-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: beside it)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument(
        "--height",
        type=int,
        default=6000,
        help="page height in px (a whole report of 10 classes fits in 6000)",
    )
    args = parser.parse_args(argv)
    html = args.run_dir / "report" / "report.html"
    if not html.is_file():
        from fedge.cli.main import main as fedge

        fedge(["report", str(args.run_dir)])
    out = args.out or html.with_name("screenshot.png")
    print(screenshot(html, out, args.width, args.height))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
