"""`fedge predict`: classify images with an exported file alone (no PyTorch)."""

from __future__ import annotations

import argparse

from fedge.cli.common import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "predict",
        help="Classify images with an exported .onnx or .tflite file (no PyTorch).",
        description="Classify images with an exported file: ONNX Runtime for .onnx, LiteRT's "
        "interpreter for .tflite. Labels and preprocessing come from manifest.json beside "
        "the file (or the ONNX file's metadata). Prints one line per image: the label, its "
        "probability, and the runners-up.",
    )
    p.add_argument("artifact", metavar="ARTIFACT", help="model.onnx or model*.tflite")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="Image files PIL can read.")
    p.add_argument(
        "--runtime",
        choices=("auto", "onnxruntime", "ai_edge_litert", "tflite_runtime"),
        default="auto",
        help="Inference runtime (auto: by extension; ai_edge_litert before tflite_runtime).",
    )
    p.add_argument("--top", type=int, default=3, metavar="K", help="Classes shown per image.")
    p.add_argument("--json", action="store_true", help="One JSON object per image.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from export.predict import ExportedClassifier

    classifier = ExportedClassifier(args.artifact, args.runtime)
    for pred in classifier.predict_files(args.images, top=max(1, args.top)):
        if args.json:
            print(json.dumps({**pred.__dict__, "runtime": classifier.runner.runtime}))
            continue
        others = ", ".join(f"{label} {p:.3f}" for label, p in pred.top[1:])
        line = f"{pred.image}: {pred.label} {pred.probability:.3f}"
        print(line + (f"  ({others})" if others else ""))
    return 0
