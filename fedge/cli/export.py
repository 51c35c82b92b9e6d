"""`fedge export`: a run's model as ONNX and TFLite files, verified against PyTorch."""

from __future__ import annotations

import argparse

from export.options import FORMATS, PRECISIONS, ExportOptions
from export.quantize import CALIBRATIONS, INT8_MODES, Int8Settings
from fedge.cli.common import add_command


def _choices(allowed: tuple[str, ...]):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"{text!r}: choose a comma-separated subset of {','.join(allowed)}"
            )
        return values

    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="Export a run's model to ONNX and TFLite, verified against PyTorch.",
        description="Write RUN_DIR/export/: model.onnx, model.tflite, model-fp16.tflite, "
        "model-int8.tflite, backbone.onnx, backbone.tflite, manifest.json, and a report "
        "(report.json, report.md) comparing each file with PyTorch on the server's held-out "
        "images: size, top-1 agreement, accuracy, CPU latency. Exits with 1 when a file "
        "misses its agreement bar (fp32 0.995, fp16 0.99, int8 0.97).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="A run directory `fedge simulate` wrote.")
    p.add_argument(
        "--out", metavar="DIR", default=None, help="Where to write (default: RUN_DIR/export)."
    )
    p.add_argument(
        "--formats",
        type=_choices(FORMATS),
        default=FORMATS,
        metavar="LIST",
        help=f"Comma-separated formats: {','.join(FORMATS)} (default: all).",
    )
    p.add_argument(
        "--precisions",
        type=_choices(PRECISIONS),
        default=PRECISIONS,
        metavar="LIST",
        help=f"Comma-separated TFLite precisions: {','.join(PRECISIONS)} (default: all). "
        "ONNX is fp32.",
    )
    p.add_argument(
        "--input-layout",
        choices=("nchw", "nhwc"),
        default="nchw",
        help="Input tensor layout of the model files (mobile apps usually feed NHWC). "
        "Backbone files stay float32 NCHW.",
    )
    p.add_argument(
        "--bake-preprocessing",
        action="store_true",
        help="The model files take uint8 RGB images at the model's size and normalize "
        "inside the graph.",
    )
    p.add_argument(
        "--int8-mode",
        choices=INT8_MODES,
        default=Int8Settings().mode,
        help="weights: int8 weights with float activations (a quarter of fp32's size, "
        "agreement close to fp16's, float speed); full: int8 weights and activations, "
        "calibrated on held-out images (integer kernels, several times faster, lower "
        "agreement: check the report).",
    )
    p.add_argument(
        "--no-bias-correction",
        action="store_true",
        help="int8: do not correct biases for weight rounding (on held-out images).",
    )
    p.add_argument(
        "--int8-float-convs",
        type=int,
        default=Int8Settings().float_convs,
        metavar="N",
        help="Full int8: keep the input ops and the first N convolutions in float.",
    )
    p.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        default="minmax",
        help="Full int8 activation ranges: global min/max over the calibration images, or "
        "the quantizer's moving average.",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        default=ExportOptions().calibration_samples,
        metavar="N",
        help="Held-out images that calibrate full int8 (not among the verified ones when "
        "the split has others).",
    )
    p.add_argument(
        "--eval-samples",
        type=int,
        default=ExportOptions().eval_samples,
        metavar="N",
        help="Held-out images each file is verified on.",
    )
    p.add_argument(
        "--latency-runs",
        type=int,
        default=ExportOptions().latency_runs,
        metavar="N",
        help="Batch-1 runs per file for the median latency.",
    )
    p.add_argument(
        "--threads", type=int, default=1, metavar="N", help="CPU threads of each runtime."
    )
    p.add_argument(
        "--no-backbone", action="store_true", help="Skip backbone.onnx and backbone.tflite."
    )
    p.add_argument(
        "--no-tflite-runtime",
        action="store_true",
        help="Do not also verify with tflite_runtime (used when $FEDGE_TFLITE_RUNTIME_PYTHON "
        "or .venv-edge/bin/python has it).",
    )
    p.add_argument(
        "--data-path",
        metavar="PATH",
        default=None,
        help="The run's dataset, when it is no longer at the run's data-path.",
    )
    p.add_argument(
        "--verify-only",
        action="store_true",
        help="Export nothing: verify the files manifest.json lists again (hashes, outputs, "
        "bars) and rewrite the report.",
    )
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    return ExportOptions(
        formats=args.formats,
        precisions=args.precisions,
        input_layout=args.input_layout,
        bake_preprocessing=args.bake_preprocessing,
        int8=Int8Settings(
            args.int8_mode, args.int8_float_convs, args.calibration, not args.no_bias_correction
        ),
        backbone=not args.no_backbone,
        eval_samples=args.eval_samples,
        calibration_samples=args.calibration_samples,
        latency_runs=args.latency_runs,
        threads=args.threads,
        tflite_runtime=not args.no_tflite_runtime,
        data_path=args.data_path,
    )


def run(args: argparse.Namespace) -> int:
    from export.pipeline import export_run, summary_lines, verify_only

    options = options_from_args(args)
    job = verify_only if args.verify_only else export_run
    result = job(args.run_dir, options, args.out)
    print("\n".join(summary_lines(result)))
    return 0 if result.ok else 1
