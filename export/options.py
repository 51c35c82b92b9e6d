"""The options of an export (torch-free, so the CLI parses them without
loading PyTorch or the exporters)."""

from __future__ import annotations

from dataclasses import dataclass, field

from export.manifest import LAYOUTS, InputSpec
from export.quantize import Int8Settings
from fedge.errors import FedgeError

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")


class ExportError(FedgeError, RuntimeError):
    """An export that cannot start or cannot finish (bad options, missing run data)."""


@dataclass(frozen=True)
class ExportOptions:
    """What ``fedge export`` writes and how it checks it."""

    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    input_layout: str = "nchw"
    bake_preprocessing: bool = False
    int8: Int8Settings = field(default_factory=Int8Settings)
    backbone: bool = True
    eval_samples: int = 1000
    calibration_samples: int = 300
    bias_correction_samples: int = 128  # of the calibration images, in one batch
    latency_runs: int = 50
    threads: int = 1
    tflite_runtime: bool = True  # also verify with tflite_runtime when one is found
    data_path: str | None = None  # the held-out data, when it moved since the run

    def __post_init__(self) -> None:
        for name, given, allowed in (
            ("formats", self.formats, FORMATS),
            ("precisions", self.precisions, PRECISIONS),
        ):
            bad = [v for v in given if v not in allowed]
            if bad or not given:
                raise ExportError(
                    f"--{name}: {', '.join(bad) or 'none given'} not allowed; choose from "
                    f"{', '.join(allowed)}."
                )
        if self.input_layout not in LAYOUTS:
            raise ExportError(f"--input-layout must be one of {', '.join(LAYOUTS)}.")
        if self.latency_runs < 1 or self.threads < 1 or self.eval_samples < 1:
            raise ExportError("--latency-runs, --threads and --eval-samples must be >= 1.")

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.input_layout, self.bake_preprocessing)
