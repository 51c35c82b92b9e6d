"""Benchmark: one client round (train + evaluate) on 200 images, edge client
versus PyTorch client, and the installed size of each environment.

    .venv/bin/python -m simulations.bench_edge --edge-python .venv-edge/bin/python

Each client runs in a fresh process of its own environment (the edge one has
no torch) with an empty cache, through the app's ClientApp: round 1 includes
the embedding pass over its 200 training and 50 test images, round 2 is head
training only. Figures: wall time per round and peak resident memory of the
process (imports included); ``du`` of each environment. The edge client gets
the backbone as a server would deliver it (from the server's artifact cache,
exported with fedge's exporter when absent). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CIFAR = Path("/tmp/fedge-data/cifar10-jpg")
WEIGHTS = ROOT.parent / "shared/assets/weights/mobilenet_v2-imagenet-int8dequant.pth"


def make_data(source: Path, out: Path, train_per_class: int = 20, test_per_class: int = 5) -> None:
    """200 training and 50 test images: the first of each class."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for cls in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            (out / split / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:n]:
                shutil.copyfile(f, out / split / cls.name / f.name)


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def run_client(python: str, runtime: str, work: Path, args: list[str]) -> dict[str, object]:
    cache = work / f"cache-{runtime}"
    cmd = [
        python,
        "-m",
        "simulations.client_round",
        "--runtime",
        runtime,
        "--cache-dir",
        str(cache),
    ]
    proc = subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{runtime} client failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edge-python", required=True, help="python of a fedge[edge] environment")
    p.add_argument("--data", type=Path, default=CIFAR, help="image folder with train/ and test/")
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--server-cache", type=Path, default=None, help="server cache dir (artifacts)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--embed-batch-size", type=int, default=64)
    a = p.parse_args()

    from client.runtimes import artifact_format
    from fedge.config import FedgeConfig
    from fedge.models.model import build_model, load_backbone_for, trainable_state
    from fedge.paths import cache_dir
    from server.artifacts import BackboneArtifacts

    values = {
        "dataset": "image-folder",
        "backbone": "mobilenet_v2",
        "weights": str(Path(a.weights).resolve()),
        "image-size": 128,
        "max-samples-per-client": 200,
        "local-epochs": 5,
        "device": "cpu",
        "num-cpus": 1,
        "embedding-cache": "disk",
        "embed-batch-size": a.embed_batch_size,
    }
    cfg = FedgeConfig.from_mapping(values)
    edge_runtime = subprocess.run(
        [a.edge_python, "-c", "from client.runtimes import choose_runtime as c; print(c('auto'))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    fmt = artifact_format(edge_runtime)
    loaded = load_backbone_for(cfg)
    server = BackboneArtifacts(loaded, a.server_cache or cache_dir(cfg))
    artifact, info = server.get(fmt)

    with tempfile.TemporaryDirectory(prefix="fedge-bench-edge-") as tmp:
        work = Path(tmp)
        make_data(a.data, work / "data")
        classes = sorted(p.name for p in (work / "data" / "train").iterdir())
        model = build_model(cfg, len(classes), loaded)
        np.savez(work / "head.npz", **trainable_state(model))
        (work / "config.json").write_text(json.dumps(values))
        # What the server's delivery leaves on the device: the verified file.
        from client.artifact_store import ArtifactStore

        ArtifactStore(work / "cache-edge" / "artifacts").put(artifact.read_bytes(), info)
        common = [
            "--config",
            str(work / "config.json"),
            "--head",
            str(work / "head.npz"),
            "--data-path",
            str(work / "data"),
            "--fingerprint",
            loaded.fingerprint,
            "--rounds",
            str(a.rounds),
            "--classes",
            *classes,
        ]
        results = {
            "pytorch": run_client(sys.executable, "torch", work, common),
            f"edge ({edge_runtime})": run_client(a.edge_python, "edge", work, common),
        }

    envs = {
        "full (.venv, fedge[dev])": Path(sys.prefix),
        "edge (fedge[edge])": Path(a.edge_python).absolute().parents[1],
    }
    print(
        f"one client round, 200 train + 50 test images, mobilenet_v2 128 px, "
        f"{cfg.local_epochs} local epochs, 1 thread; backbone.{fmt} {info.size_bytes / 1e6:.2f} MB"
    )
    print(
        f"{'client':<26} {'round 1 s':>10} {'round 2 s':>10} {'peak RSS MB':>12} {'local acc':>10}"
    )
    for name, r in results.items():
        secs = list(r["round_seconds"]) + [float("nan")]  # type: ignore[call-overload]
        print(
            f"{name:<26} {secs[0]:>10.2f} {secs[1]:>10.3f} {r['peak_rss_mb']:>12.0f} "
            f"{r['local_accuracy']:>10.3f}"
        )
    print(f"{'environment':<26} {'installed MB':>12}")
    for name, path in envs.items():
        print(f"{name:<26} {du_mb(path):>12.0f}")
    print(
        json.dumps(
            {
                "clients": results,
                "installed_mb": {k: du_mb(v) for k, v in envs.items()},
                "artifact_bytes": info.size_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
