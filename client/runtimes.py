"""Inference runtimes that run a backbone artifact without PyTorch.

``ai-edge-litert`` and ``tflite-runtime`` run ``backbone.tflite``,
``onnxruntime`` runs ``backbone.onnx``. ``auto`` takes the first one installed
in that order. Each runtime is imported only when used.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedge.errors import FedgeError

PREFERENCE = ("ai-edge-litert", "tflite-runtime", "onnxruntime")
_MODULE = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "onnxruntime": "onnxruntime",
}
_FORMAT = {"ai-edge-litert": "tflite", "tflite-runtime": "tflite", "onnxruntime": "onnx"}
_INSTALL = {
    "ai-edge-litert": "pip install ai-edge-litert",
    "tflite-runtime": "pip install 'fedge[edge]' (tflite-runtime, numpy<2)",
    "onnxruntime": "pip install onnxruntime",
}


class RuntimeUnavailable(FedgeError, ImportError):
    """The configured inference runtime is not installed here."""


def is_installed(runtime: str) -> bool:
    top = _MODULE[runtime].split(".")[0]
    return importlib.util.find_spec(top) is not None


def installed_runtimes() -> list[str]:
    return [r for r in PREFERENCE if is_installed(r)]


def choose_runtime(requested: str) -> str:
    """``requested`` if installed; for ``auto``/``edge`` the first installed."""
    if requested in ("auto", "edge"):
        found = installed_runtimes()
        if not found:
            raise RuntimeUnavailable(
                "this edge client has no inference runtime: install one of "
                f"{', '.join(PREFERENCE)} (for example `{_INSTALL['tflite-runtime']}`)."
            )
        return found[0]
    if requested not in _MODULE:
        raise RuntimeUnavailable(
            f"unknown edge runtime '{requested}'; allowed: auto, {', '.join(PREFERENCE)}."
        )
    if not is_installed(requested):
        raise RuntimeUnavailable(
            f"edge runtime '{requested}' is not installed here: `{_INSTALL[requested]}`, "
            f"or choose an installed one ({', '.join(installed_runtimes()) or 'none'})."
        )
    return requested


def artifact_format(runtime: str) -> str:
    """The backbone file format a runtime runs: ``tflite`` or ``onnx``."""
    return _FORMAT[runtime]


class Embedder(Protocol):
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """float32 NCHW preprocessed images -> float32 (N, D) embeddings."""
        ...


class TfliteEmbedder:
    """A ``.tflite`` backbone in a LiteRT / TFLite interpreter. The file's fixed
    batch of 1 is resized to each batch's size (a batch-1 loop if it cannot)."""

    def __init__(self, path: Path, runtime: str, num_threads: int = 1) -> None:
        interpreter_cls: Any = importlib.import_module(_MODULE[runtime]).Interpreter
        self.interpreter = interpreter_cls(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = int(self.interpreter.get_input_details()[0]["shape"][0])
        self.resizable = True

    def _run(self, images: np.ndarray) -> np.ndarray:
        if images.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input, list(images.shape))
            self.interpreter.allocate_tensors()
            self.batch = images.shape[0]
        self.interpreter.set_tensor(self.input, images)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output), dtype=np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if self.resizable:
            try:
                out = self._run(images)
                if out.shape[0] == images.shape[0]:
                    return out.reshape(len(images), -1)
            except (RuntimeError, ValueError):
                pass
            self.resizable = False
        return np.concatenate([self._run(images[i : i + 1]) for i in range(len(images))])


class OnnxEmbedder:
    """A ``.onnx`` backbone (dynamic batch) in ONNX Runtime on the CPU."""

    def __init__(self, path: Path, num_threads: int = 1) -> None:
        ort: Any = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=np.float32)
        out = self.session.run(None, {self.input: x})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(images), -1)


def open_embedder(path: Path, runtime: str, num_threads: int = 1) -> Embedder:
    """An embedder for the artifact at ``path`` in ``runtime`` (installed)."""
    if artifact_format(runtime) == "onnx":
        return OnnxEmbedder(path, num_threads)
    return TfliteEmbedder(path, runtime, num_threads)
