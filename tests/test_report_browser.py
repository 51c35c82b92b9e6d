"""The HTML report as a browser shows it: headless Chromium, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedge.cli.main import main
from simulations.report_screenshot import find_chromium, screenshot
from tests.run_dirs import write_run_dir

pytestmark = pytest.mark.slow


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.asarray(rgb)) <= tol).all(axis=-1)


def test_chromium_renders_every_plot_of_the_report(tmp_path: Path):
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    run = write_run_dir(tmp_path / "run", rounds=5, epsilon=True, export=True)
    assert main(["report", str(run)]) == 0
    png = screenshot(run / "report" / "report.html", tmp_path / "shot.png", 1280, 6000)
    with Image.open(png) as img:
        assert img.size == (1280, 6000)
        pixels = np.asarray(img.convert("RGB"))
    # Plot lines and bars in matplotlib's first colours only exist if the
    # embedded PNGs decoded: a broken image would leave the page text-only.
    assert _near(pixels, (31, 119, 180)).sum() > 2000  # tab:blue (accuracy line, up bars)
    assert _near(pixels, (255, 127, 14)).sum() > 2000  # tab:orange (federated, down bars)
    assert _near(pixels, (196, 78, 82)).sum() > 200  # the epsilon line
    inked_rows = (pixels < 200).any(axis=(1, 2))
    assert inked_rows[:5000].mean() > 0.5  # content down the page, not a blank sheet
