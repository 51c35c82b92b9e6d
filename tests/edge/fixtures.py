"""Reference data for the edge tests, made where PyTorch is installed and read
where it is not (the edge environment of ``.ci/run``):

    python -m tests.edge.fixtures OUT_DIR

writes an image folder, the tiny test config's backbone as ``backbone.onnx``
and/or ``backbone.tflite`` (whichever this environment can export) with their
:class:`~fedge.artifacts.ArtifactInfo`, PyTorch's embeddings of some images,
and heads trained by the PyTorch trainer from a known start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

TRAIN_CASES = {
    "linear-sgd": ("linear", dict(optimizer="sgd", lr=0.05, momentum=0.9, proximal_mu=0.0)),
    "mlp-adam-prox": ("mlp", dict(optimizer="adam", lr=0.005, momentum=0.9, proximal_mu=0.1)),
}
ORDER_SEED = (1, 2, 3)


def config_values(images: Path) -> dict[str, object]:
    from tests.conftest import tiny_config_values

    return tiny_config_values(images, **{"num-clients": 2})


def _heads(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    from client.local_training import TrainSettings
    from client.trainer import train_head
    from fedge.models.heads import build_head

    out: dict[str, np.ndarray] = {}
    for name, (kind, opt) in TRAIN_CASES.items():
        torch.manual_seed(0)
        head = build_head(kind, x.shape[1], 3, hidden=16)
        for n, p in head.named_parameters():
            out[f"{name}/start/head.{n}"] = p.detach().numpy().copy()
        s = TrainSettings(
            epochs=4,
            batch_size=16,
            weight_decay=1e-3,
            seed=0,
            **opt,  # type: ignore[arg-type]
        )
        train_head(head, x, y, s, order_seed=ORDER_SEED, device=torch.device("cpu"))
        for n, p in head.named_parameters():
            out[f"{name}/trained/head.{n}"] = p.detach().numpy().copy()
    return out


def make(out: Path, artifacts: dict[str, tuple[Path, object]] | None = None) -> list[str]:
    """Write the fixtures; return the artifact formats written. ``artifacts``:
    the tiny backbone already exported (``tests.artifacts.export_all``)."""
    import shutil

    import torch

    from fedge.config import FedgeConfig
    from fedge.data.federated import simulated_client
    from fedge.embeddings.batches import load_batch
    from fedge.models.model import load_backbone_for
    from tests.artifacts import export_all
    from tests.conftest import write_color_images

    out.mkdir(parents=True, exist_ok=True)
    images = out / "colors"
    write_color_images(images / "train", n_per_class=20, seed=0)
    write_color_images(images / "test", n_per_class=5, seed=1)
    values = config_values(images)
    cfg = FedgeConfig.from_mapping(values)
    loaded = load_backbone_for(cfg)
    if artifacts is None:
        artifacts = export_all(values, out)  # type: ignore[assignment]
    assert artifacts is not None
    for fmt, (path, info) in artifacts.items():
        if path != out / f"backbone.{fmt}":
            shutil.copyfile(path, out / f"backbone.{fmt}")
        (out / f"backbone.{fmt}.json").write_text(info.to_json())  # type: ignore[attr-defined]
    formats = list(artifacts)

    data = simulated_client(cfg, 0, 2).train
    batch, ok = load_batch(data.source, data.indices, loaded.preprocessing)
    assert ok.all()
    with torch.no_grad():
        z = loaded.module.eval()(torch.from_numpy(batch)).numpy()
    y = data.labels
    np.savez(out / "reference.npz", indices=data.indices, embeddings=z, labels=y, **_heads(z, y))
    (out / "config.json").write_text(json.dumps({**values, "formats": formats}))
    return formats


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(f"edge fixtures in {target}: artifacts {', '.join(make(target)) or 'none'}")
