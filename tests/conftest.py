"""Shared fixtures: small real image folders, the shared assets when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
ASSET_WEIGHTS = ASSETS / "weights" / "mobilenet_v2-imagenet-int8dequant.pth"
ASSET_CIFAR = ASSETS / "data" / "cifar10-jpg.tar.gz"

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def write_color_images(folder: Path, n_per_class: int, seed: int, size: int = 24) -> None:
    """JPEGs of noisy solid colours: easy classes, real files, any backbone."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLORS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            noise = rng.normal(0, 25, size=(size, size, 3))
            pixels = np.clip(np.asarray(rgb) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i:04d}.jpg", quality=90)


@pytest.fixture(scope="session")
def color_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder with train/ and test/ splits of three colour classes."""
    root = tmp_path_factory.mktemp("colors")
    write_color_images(root / "train", n_per_class=40, seed=0)
    write_color_images(root / "test", n_per_class=10, seed=1)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep every test's fedge cache out of the user's home."""
    monkeypatch.setenv("FEDGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fedge-cache"))


def require_assets(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shared assets absent: {', '.join(missing)} (see README, 'Offline assets')")


def tiny_config_values(data: Path, **extra: object) -> dict[str, object]:
    """A config that runs in seconds: small random backbone, small images."""
    values: dict[str, object] = {
        "dataset": "image-folder",
        "data-path": str(data),
        "backbone": "resnet18",
        "weights": "none",
        "image-size": 32,
        "num-clients": 3,
        "num-rounds": 2,
        "local-epochs": 2,
        "partitioner": "iid",
        "max-samples-per-client": 0,
        "max-test-samples": 0,
        "device": "cpu",
    }
    values.update(extra)
    return values


@pytest.fixture(scope="session")
def tiny_backbone_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The tiny config's backbone exported in every format this environment
    can export: ``{format: (path, ArtifactInfo)}`` (needs torch)."""
    from tests.artifacts import export_all

    return export_all(tiny_config_values(Path("unused")), tmp_path_factory.mktemp("artifacts"))


os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


@pytest.fixture
def flower_task():
    """Messages built outside a Flower run need a task identity, as in a ServerApp."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def train_message(
    cfg, kind="train", fingerprint=None, classes=("blue", "green", "red"), config=None
):
    """A server message for ``cfg``'s model, as a ServerApp would send it (needs ``flower_task``);
    returns it with the trainable state it carries."""
    from flwr.app import ConfigRecord, Message, RecordDict

    from fedge.models.model import build_model, load_backbone_for, trainable_state
    from fedge.records import ARRAYS, CLASS_NAMES, CONFIG, FINGERPRINT, to_record

    model = build_model(cfg, len(classes))
    values = {
        FINGERPRINT: fingerprint or load_backbone_for(cfg).fingerprint,
        CLASS_NAMES: list(classes),
        "server-round": 1,
        **(config or {}),
    }
    content = RecordDict({ARRAYS: to_record(trainable_state(model)), CONFIG: ConfigRecord(values)})
    msg = Message(content, dst_node_id=7, message_type=kind)
    msg.metadata.__dict__["_message_id"] = "m-1"  # what the SuperLink assigns on push
    return msg, trainable_state(model)


def client_context(cfg, node_config=None, state=None):
    """A ClientApp context: simulated partition 0 of 3 unless ``node_config`` says otherwise."""
    from flwr.app import Context, RecordDict

    return Context(
        run_id=1,
        node_id=7,
        node_config=node_config
        if node_config is not None
        else {"partition-id": 0, "num-partitions": 3},
        state=state if state is not None else RecordDict(),
        run_config=cfg.to_run_config(),
    )
