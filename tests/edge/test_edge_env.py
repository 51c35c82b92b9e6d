"""The edge environment is what an edge device installs: fedge[edge], no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge.conftest import IN_EDGE_ENV

ROOT = Path(__file__).resolve().parents[2]
edge_env_only = pytest.mark.skipif(not IN_EDGE_ENV, reason="checks the edge environment itself")


@edge_env_only
def test_torch_is_not_importable_in_the_edge_environment():
    with pytest.raises(ImportError):
        import torch  # noqa: F401
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401


@edge_env_only
def test_the_edge_environment_has_tflite_runtime_and_numpy_below_2():
    import numpy as np
    from tflite_runtime.interpreter import Interpreter  # noqa: F401

    assert int(np.__version__.split(".")[0]) < 2


@edge_env_only
def test_torch_commands_name_the_extra_they_need():
    proc = subprocess.run(
        [sys.executable, "-m", "fedge.cli.main", "simulate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "pip install 'fedge[torch]'" in proc.stderr


def test_the_edge_client_imports_no_torch():
    code = (
        "import sys, client.dispatch, client.edge_app, fedge.cli.main; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')]; "
        "assert not bad, bad[:5]"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
