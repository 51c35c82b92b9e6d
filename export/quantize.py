"""Smaller TFLite files from the fp32 one, with LiteRT's ai-edge-quantizer.

- fp16: weights stored as float16 (``FLOAT_CASTING``), compute in float.
- int8, mode ``full``: static post-training quantization, int8 weights
  (per channel) and int8 activations, calibrated on images from the server's
  held-out split. Activation ranges are the global min/max over the
  calibration set (the quantizer's default moving average clips the tails of
  the ranges when it sees one image at a time), and the graph's first
  ``float_convs`` convolutions, with the input ops before them, stay in float
  (the int8 input scale of the first convolution is coarser than a pixel step).
- int8, mode ``weights``: int8 weights (per channel), float activations and
  compute: the same size, no calibration, closer to fp32, not faster.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

INT8_MODES = ("full", "weights")
CALIBRATIONS = ("minmax", "moving-average")
SIGNATURE = "serving_default"
_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def quiet_litert() -> None:
    """Keep TensorFlow/absl's C++ info lines off the console (set before import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")


class QuantizationError(RuntimeError):
    """ai-edge-quantizer failed."""


@dataclass(frozen=True)
class Int8Settings:
    """How ``model-int8.tflite`` is made."""

    mode: str = "weights"
    float_convs: int = 1
    calibration: str = "minmax"
    bias_correction: bool = True

    def __post_init__(self) -> None:
        if self.mode not in INT8_MODES:
            raise ValueError(f"int8 mode must be one of {', '.join(INT8_MODES)}, got {self.mode!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}")
        if self.float_convs < 0:
            raise ValueError("float_convs must be >= 0")

    @property
    def needs_calibration(self) -> bool:
        return self.mode == "full"

    def describe(self) -> str:
        corrected = ", bias-corrected" if self.bias_correction else ""
        if self.mode == "weights":
            return f"int8 weights (per channel{corrected}); float activations and compute"
        kept = ""
        if self.float_convs:
            kept = f"; input ops and the first {self.float_convs} convolution(s) in float"
        return (
            f"int8 weights (per channel{corrected}) and int8 activations "
            f"({self.calibration} calibration){kept}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """The quantizer prints progress bars; keep them unless it fails."""
    buffer = io.StringIO()
    with (
        contextlib.redirect_stdout(buffer),
        contextlib.redirect_stderr(buffer),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield buffer


def _quantizer(src: Path) -> Any:
    quiet_litert()
    try:
        from ai_edge_quantizer import quantizer
    except ImportError as e:
        raise QuantizationError(
            'fp16/int8 TFLite files need ai-edge-quantizer: pip install -e ".[dev,export]"'
        ) from e
    return quantizer.Quantizer(str(src))


def to_fp16(src: Path, dst: Path) -> Path:
    """fp32 ``.tflite`` -> float16 weights (half the size, float compute)."""
    from ai_edge_quantizer import algorithm_manager, qtyping

    with _quiet() as log:
        try:
            qt = _quantizer(src)
            qt.add_weight_only_config(
                regex=".*",
                operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                num_bits=16,
                algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING,
            )
            qt.quantize().export_model(str(dst), overwrite=True)
        except Exception as e:  # the quantizer raises many types
            raise QuantizationError(f"fp16 conversion failed: {e}\n{log.getvalue()}") from e
    return dst


def op_scopes(path: Path) -> list[tuple[str, str]]:
    """``(op name, scope)`` of each operator of the main graph, in execution
    order; the scope (output tensor names) is what quantization recipes match."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = tfl.read_model(str(path))
    graph = model.subgraphs[0]
    codes = [names.get(c.builtinCode, "CUSTOM") for c in model.operatorCodes]
    return [(codes[op.opcodeIndex], tfl.get_op_scope(op, graph.tensors)) for op in graph.operators]


def leading_float_scopes(path: Path, float_convs: int) -> list[str]:
    """Scopes of the operators up to and including the ``float_convs``-th
    convolution: the graph's input ops and its first layers."""
    if float_convs <= 0:
        return []
    scopes, convs = [], 0
    for name, scope in op_scopes(path):
        scopes.append(scope)
        if name in _CONVS:
            convs += 1
            if convs == float_convs:
                break
    return scopes


def _min_max_calibration(qt: Any, src: Path, samples: list[dict[str, np.ndarray]]) -> Any:
    """Calibrate with the global min/max of each tensor over all samples (the
    quantizer's own ``calibrate`` keeps a moving average per sample)."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(qt.get_quantization_recipe())
    calib = calibrator.Calibrator(str(src), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({SIGNATURE: samples}, manager)
    return calib.get_model_qsvs()


def to_int8(
    src: Path,
    dst: Path,
    settings: Int8Settings,
    calibration_inputs: np.ndarray | None = None,
) -> dict[str, Any]:
    """fp32 ``.tflite`` -> int8 ``.tflite``. ``calibration_inputs`` (full mode)
    are batch-major model inputs, fed one at a time. Returns what was done."""
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe

    none = algorithm_manager.AlgorithmName.NO_QUANTIZE
    details: dict[str, Any] = settings.to_dict()
    with _quiet() as log:
        try:
            qt = _quantizer(src)
            if settings.mode == "weights":
                qt.load_quantization_recipe(recipe.weight_only_wi8_afp32())
                result = qt.quantize()
            else:
                if calibration_inputs is None or not len(calibration_inputs):
                    raise QuantizationError("full int8 needs calibration images")
                qt.load_quantization_recipe(recipe.static_wi8_ai8())
                kept = leading_float_scopes(src, settings.float_convs)
                for scope in kept:
                    qt.update_quantization_recipe(
                        regex=f"^{re.escape(scope)}$",
                        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                        algorithm_key=none,
                    )
                name = _input_name(src)
                samples = [
                    {name: calibration_inputs[i : i + 1]} for i in range(len(calibration_inputs))
                ]
                if settings.calibration == "minmax":
                    qsvs = _min_max_calibration(qt, src, samples)
                else:
                    qsvs = qt.calibrate({SIGNATURE: samples}, num_threads=2)
                result = qt.quantize(qsvs)
                details.update(calibration_samples=len(samples), float_ops=len(kept))
            result.export_model(str(dst), overwrite=True)
        except QuantizationError:
            raise
        except Exception as e:  # the quantizer raises many types
            raise QuantizationError(f"int8 quantization failed: {e}\n{log.getvalue()}") from e
    return details


def _input_name(path: Path) -> str:
    from export.runtimes import interpreter_class

    runner = interpreter_class("ai_edge_litert")(model_path=str(path))
    return next(iter(runner.get_signature_runner(SIGNATURE).get_input_details()))
