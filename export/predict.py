"""Classify images with an exported file alone: the reference for app developers.

No PyTorch here: an ``.onnx`` file runs in ONNX Runtime, a ``.tflite`` file in
LiteRT's interpreter (``ai_edge_litert``, else ``tflite_runtime``). Labels and
preprocessing come from ``manifest.json`` beside the file (or the ONNX file's
own metadata), and images are prepared exactly as in training:

1. decode, convert to RGB, resize to ``image_size`` x ``image_size``
   (``interpolation``: bilinear or bicubic) -> uint8 ``[S, S, 3]``;
2. unless the graph bakes preprocessing in: ``(x / 255 - mean) / std`` as float32;
3. transpose to the file's layout (NCHW or NHWC) and stack into a batch;
4. run; softmax over the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from export.manifest import ArtifactError, InputSpec, describe_artifact
from export.runtimes import Runner, open_runner, prepare_input
from fedge.models.preprocessing import Preprocessing


@dataclass(frozen=True)
class Prediction:
    image: str
    label: str
    index: int
    probability: float
    top: list[tuple[str, float]]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ExportedClassifier:
    """An exported ``model*.onnx`` / ``model*.tflite`` with its labels and
    preprocessing."""

    def __init__(self, path: str | Path, runtime: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        facts = describe_artifact(self.path)
        if facts.get("kind") == "backbone":
            raise ArtifactError(
                f"'{self.path.name}' is a backbone file: it outputs embeddings, not classes. "
                "Classify with model.onnx or model*.tflite."
            )
        self.facts: dict[str, Any] = facts
        self.labels: list[str] = list(facts["labels"])
        self.preprocessing = Preprocessing.from_dict(facts["preprocessing"])
        self.spec = InputSpec.from_dict(facts.get("input", {}))
        self.runner: Runner = open_runner(self.path, runtime, threads)

    def prepare(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> the input tensor of this file."""
        pixels = np.stack([self.preprocessing.resize_rgb(im) for im in images])
        pre = self.preprocessing
        return prepare_input(pixels, self.spec.layout, self.spec.baked, pre.mean, pre.std)

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        return softmax(self.runner.run(self.prepare(images)))

    def predict_files(self, paths: Sequence[str | Path], top: int = 3) -> list[Prediction]:
        images = [load_image(p) for p in paths]
        probs = self.probabilities(images)
        out = []
        for path, p in zip(paths, probs, strict=True):
            order = np.argsort(-p)[:top]
            best = int(order[0])
            out.append(
                Prediction(
                    str(path),
                    self.labels[best],
                    best,
                    float(p[best]),
                    [(self.labels[int(i)], float(p[int(i)])) for i in order],
                )
            )
        return out


def load_image(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, UnidentifiedImageError) as e:
        raise ArtifactError(f"cannot read image '{path}': {e}") from e
