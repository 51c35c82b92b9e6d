"""The edge suite runs in two places: the main environment (which makes its
fixtures on the fly) and the edge environment of ``.ci/run`` (``fedge[edge]``,
no torch; ``FEDGE_EDGE_ENV=1``), which reads fixtures the main environment
made (``FEDGE_EDGE_FIXTURES=DIR``, see ``tests/edge/fixtures.py``)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fedge.artifacts import ArtifactInfo

IN_EDGE_ENV = os.environ.get("FEDGE_EDGE_ENV") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.edge)


@dataclass(frozen=True)
class EdgeFixtures:
    root: Path
    config: dict[str, object]
    reference: dict[str, np.ndarray]

    @property
    def formats(self) -> list[str]:
        return list(self.config["formats"])  # type: ignore[call-overload]

    def artifact(self, fmt: str) -> tuple[Path, ArtifactInfo]:
        path = self.root / f"backbone.{fmt}"
        return path, ArtifactInfo.from_json((self.root / f"backbone.{fmt}.json").read_text())

    def config_values(self, **extra: object) -> dict[str, object]:
        values = {k: v for k, v in self.config.items() if k != "formats"}
        return {**values, "data-path": str(self.root / "colors"), **extra}


@pytest.fixture(scope="session")
def edge_fixtures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> EdgeFixtures:
    given = os.environ.get("FEDGE_EDGE_FIXTURES")
    if given:
        root = Path(given)
    elif importlib.util.find_spec("torch") is None:
        message = "no FEDGE_EDGE_FIXTURES: make them with `python -m tests.edge.fixtures DIR`"
        if IN_EDGE_ENV:
            pytest.fail(message)
        pytest.skip(message)
    else:
        from tests.edge.fixtures import make

        root = tmp_path_factory.mktemp("edge-fixtures")
        make(root, request.getfixturevalue("tiny_backbone_artifacts"))
    config = json.loads((root / "config.json").read_text())
    with np.load(root / "reference.npz") as z:
        reference = {k: z[k] for k in z.files}
    return EdgeFixtures(root, config, reference)
