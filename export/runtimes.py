"""Run exported files without PyTorch: ONNX Runtime, LiteRT's ``ai_edge_litert``
interpreter, or the older ``tflite_runtime``.

This module imports only numpy and the standard library at the top (each
runtime is imported when used), so it also runs as a script inside a separate
environment that has ``tflite_runtime`` and numpy < 2 but not fedge's other
dependencies: ``python export/runtimes.py REQUEST.json`` (see :func:`worker`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

TFLITE_RUNTIMES = ("ai_edge_litert", "tflite_runtime")
RUNTIMES = ("onnxruntime", *TFLITE_RUNTIMES)
_DIST = {
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
}


class RuntimeUnavailable(RuntimeError):
    """The inference runtime an artifact needs is not installed."""


def prepare_input(
    images: np.ndarray,
    layout: str,
    baked: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """uint8 RGB images ``[N, H, W, 3]``, already resized to the model's size ->
    the tensor a graph with this input layout expects.

    Not baked: float32 ``(x / 255 - mean) / std`` (the arithmetic of
    ``fedge.models.preprocessing.Preprocessing.normalize``). Baked: the uint8
    pixels themselves; the graph normalizes.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
    if baked:
        x = images
    else:
        x = images.astype(np.float32) / 255.0
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if layout == "nchw":
        x = np.moveaxis(x, -1, 1)
    return np.ascontiguousarray(x)


def runtime_version(runtime: str) -> str:
    try:
        return importlib.metadata.version(_DIST[runtime])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def runtime_available(runtime: str) -> bool:
    return importlib.util.find_spec(runtime) is not None


class Runner(Protocol):
    """An exported file loaded into an inference runtime."""

    runtime: str

    def run(self, x: np.ndarray, batch_size: int = 50) -> np.ndarray:
        """Outputs (float32) for inputs of any batch size."""
        ...

    def latency_ms(self, x1: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
        """Median wall time of one batch-1 inference, in milliseconds."""
        ...


def _median_ms(fn: Any, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


class OnnxRunner:
    """An ``.onnx`` file in ONNX Runtime's CPU execution provider."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeUnavailable(
                f"running '{path}' needs onnxruntime: pip install onnxruntime"
            ) from e
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.runtime = f"onnxruntime {runtime_version('onnxruntime')}"

    def run(self, x: np.ndarray, batch_size: int = 50) -> np.ndarray:
        outs = [
            self.session.run(None, {self.input_name: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs).astype(np.float32, copy=False)

    def latency_ms(self, x1: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
        feed = {self.input_name: x1[:1]}
        return _median_ms(lambda: self.session.run(None, feed), runs, warmup)


def interpreter_class(runtime: str) -> Any:
    """The ``Interpreter`` class of ``ai_edge_litert`` or ``tflite_runtime``."""
    if runtime not in TFLITE_RUNTIMES:
        raise ValueError(f"TFLite runtime must be one of {', '.join(TFLITE_RUNTIMES)}")
    try:
        module = importlib.import_module(f"{runtime}.interpreter")
    except ImportError as e:
        hint = "ai-edge-litert" if runtime == "ai_edge_litert" else "tflite-runtime (numpy<2)"
        raise RuntimeUnavailable(f"{runtime} is not installed: pip install {hint}") from e
    return module.Interpreter


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float inputs into an integer input tensor, through its (scale, zero point)."""
    dtype = np.dtype(detail["dtype"])
    if x.dtype == dtype:
        return x
    scale, zero = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and np.issubdtype(x.dtype, np.floating) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Integer outputs of a fully quantized model back to floats."""
    if np.issubdtype(y.dtype, np.integer):
        scale, zero = detail["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.astype(np.float32, copy=True)


class TFLiteRunner:
    """A ``.tflite`` file in a TFLite interpreter. Files are exported with a
    batch of 1; the input is resized for other batch sizes."""

    def __init__(
        self, path: str | Path, runtime: str = "ai_edge_litert", threads: int | None = None
    ) -> None:
        cls = interpreter_class(runtime)
        self.interpreter = cls(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])
        self.interpreter.allocate_tensors()
        self.runtime = f"{runtime} {runtime_version(runtime)}"

    def _resize(self, batch: int) -> None:
        if batch != self.batch:
            shape = [batch, *self.input["shape"][1:]]
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self.batch = batch

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._resize(len(x))
        self.interpreter.set_tensor(self.input["index"], _quantize(x, self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)

    def run(self, x: np.ndarray, batch_size: int = 50) -> np.ndarray:
        return np.concatenate(
            [self._invoke(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def latency_ms(self, x1: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
        self._resize(1)
        self.interpreter.set_tensor(self.input["index"], _quantize(x1[:1], self.input))
        return _median_ms(self.interpreter.invoke, runs, warmup)


def open_runner(path: str | Path, runtime: str = "auto", threads: int | None = None) -> Runner:
    """Load an exported file in the runtime its extension calls for: ``.onnx`` in
    ONNX Runtime, ``.tflite`` in ``ai_edge_litert`` (else ``tflite_runtime``)."""
    path = Path(path)
    if path.suffix == ".onnx":
        if runtime not in ("auto", "onnxruntime"):
            raise ValueError(f"'{path.name}' is ONNX: runtime must be onnxruntime, not {runtime}")
        return OnnxRunner(path, threads)
    if path.suffix == ".tflite":
        if runtime == "auto":
            found = [r for r in TFLITE_RUNTIMES if runtime_available(r)]
            if not found:
                raise RuntimeUnavailable(
                    f"running '{path.name}' needs a TFLite interpreter: pip install "
                    "ai-edge-litert (or tflite-runtime with numpy<2)"
                )
            runtime = found[0]
        return TFLiteRunner(path, runtime, threads)
    raise ValueError(f"'{path}': expected an .onnx or .tflite file")


# --- running in another environment ------------------------------------------------


def worker(request_path: str | Path) -> dict[str, Any]:
    """Run the jobs of a request file in this environment and write their outputs.

    The request (JSON) holds ``runtime``, ``threads``, ``latency_runs``,
    ``images`` (an ``.npy`` of uint8 ``[N, H, W, 3]``), ``mean``, ``std`` and
    ``jobs``: ``{"artifact", "layout", "baked", "output"}``; each job's outputs
    go to its ``output`` ``.npy``. Returns (and prints as JSON) the runtime and
    each job's latency, or its error.
    """
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    images = np.load(request["images"])
    results = []
    for job in request["jobs"]:
        try:
            runner = TFLiteRunner(job["artifact"], request["runtime"], request.get("threads"))
            x = prepare_input(images, job["layout"], job["baked"], request["mean"], request["std"])
            np.save(job["output"], runner.run(x))
            latency = runner.latency_ms(x[:1], runs=int(request.get("latency_runs", 50)))
            results.append({"artifact": job["artifact"], "latency_ms": latency})
        except Exception as e:  # reported back per job: one broken file is not all
            results.append({"artifact": job["artifact"], "error": f"{type(e).__name__}: {e}"})
    reply = {
        "runtime": f"{request['runtime']} {runtime_version(request['runtime'])}",
        "numpy": np.__version__,
        "results": results,
    }
    print(json.dumps(reply))
    return reply


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python export/runtimes.py REQUEST.json")
    worker(sys.argv[1])
