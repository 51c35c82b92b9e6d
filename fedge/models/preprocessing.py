"""Image preprocessing of a backbone: resize, RGB, ImageNet normalization.

Deliberately torch-free (PIL + numpy) so that edge clients and exported-model
inference apply exactly the transform the PyTorch path uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``image_size`` x ``image_size``, scale to [0, 1], normalize."""

    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def resize_rgb(self, image: Image.Image) -> np.ndarray:
        """The uint8 HWC RGB array the model sees before normalization."""
        rgb = image.convert("RGB")
        size = (self.image_size, self.image_size)
        if rgb.size != size:
            rgb = rgb.resize(size, _RESAMPLE[self.interpolation])
        return np.asarray(rgb, dtype=np.uint8)

    def normalize(self, hwc_uint8: np.ndarray) -> np.ndarray:
        """uint8 HWC (or NHWC) -> float32 CHW (or NCHW), normalized."""
        x = hwc_uint8.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.moveaxis(x, -1, -3).copy()

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalize(self.resize_rgb(image))

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Preprocessing:
        return cls(
            image_size=int(d["image_size"]),  # type: ignore[arg-type]
            mean=tuple(d.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(d.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            interpolation=str(d.get("interpolation", "bilinear")),
        )
