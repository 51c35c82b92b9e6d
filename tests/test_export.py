"""Export to ONNX and TFLite, verified with real exporters and interpreters on a
tiny model (resnet18, random weights, 32 px, a head fitted to colour images)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="needs the export extra: pip install -e '.[dev,export]'")

from export.manifest import MANIFEST, InputSpec, describe_artifact  # noqa: E402
from export.options import ExportError, ExportOptions  # noqa: E402
from export.runtimes import OnnxRunner, TFLiteRunner, prepare_input  # noqa: E402
from fedge import rundir  # noqa: E402
from fedge.artifacts import file_sha256  # noqa: E402
from fedge.cli.main import main  # noqa: E402
from fedge.config import FedgeConfig  # noqa: E402
from tests.conftest import tiny_config_values, write_color_images  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["blue", "green", "red"]
QUICK = ExportOptions(latency_runs=5, calibration_samples=40, tflite_runtime=False)


def make_run_dir(root: Path) -> Path:
    """A run directory as the server writes it, with a head fitted (least squares
    on the frozen embeddings) so that logits have real margins."""
    import torch

    from fedge.data.federated import dataset_splits
    from fedge.embeddings.extract import compute_embeddings
    from fedge.models.model import build_model, load_backbone_for, trainable_state

    data = root / "data"
    write_color_images(data / "train", n_per_class=20, seed=0)
    write_color_images(data / "test", n_per_class=40, seed=1)
    values = tiny_config_values(data, **{"run-dir": str(root / "run"), "max-test-samples": 60})
    cfg = FedgeConfig.from_mapping(values)
    run = rundir.new_run_dir(cfg)
    rundir.write_config(run, cfg)
    loaded = load_backbone_for(cfg)
    model = build_model(cfg, len(CLASSES), loaded)
    train = dataset_splits(cfg).train
    z = compute_embeddings(
        loaded.module,
        loaded.preprocessing,
        train,
        np.arange(len(train)),
        device=torch.device("cpu"),
    )
    z1 = np.hstack([z, np.ones((len(z), 1), np.float32)])
    target = 6.0 * np.eye(len(CLASSES))[train.labels] - 3.0
    w = np.linalg.lstsq(z1, target, rcond=None)[0]
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)))
        model.head.bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    meta = {"labels": CLASSES, "image_size": 32, "fingerprint": loaded.fingerprint}
    rundir.save_model(run, trainable_state(model), model.state_dict(), meta)
    summary = {"final_accuracy": 1.0, "rounds": 2, "dp": "central", "epsilon": 3.5}
    summary["dp_delta"] = 1e-5
    rundir.write_json(run / rundir.SUMMARY, summary)
    row = {"round": 1, "accuracy": 1.0, "loss": 0.1, "macro_f1": 1.0, "num_clients": 3}
    rundir.append_metrics(run, {**row, "bytes_up": 1, "bytes_down": 1, "seconds": 1.0})
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """One full export (every format and precision) of the tiny run."""
    from export.pipeline import export_run

    run = make_run_dir(tmp_path_factory.mktemp("export"))
    return export_run(run, QUICK, printer=None)


def rows_by_artifact(result) -> dict[str, dict]:
    return {r["artifact"]: r for r in result.rows if not r["runtime"].startswith("tflite_runtime")}


def test_export_writes_every_artifact_each_agreeing_with_pytorch(exported) -> None:
    out = exported.out_dir
    expected = {
        "model.onnx",
        "model.tflite",
        "model-fp16.tflite",
        "model-int8.tflite",
        "backbone.onnx",
        "backbone.tflite",
    }
    assert expected <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.data")), "model.onnx must be one self-contained file"
    rows = rows_by_artifact(exported)
    assert expected <= set(rows)
    for name in ("model.onnx", "model.tflite", "backbone.onnx", "backbone.tflite"):
        assert rows[name]["top1_agreement"] >= 0.995, rows[name]
        assert rows[name]["max_abs_diff"] < 1e-3, rows[name]
        assert rows[name]["passed"]
    assert rows["model-fp16.tflite"]["max_abs_diff"] < 0.1
    reference = rows["PyTorch (reference)"]["accuracy"]
    assert reference > 0.9  # the fitted head separates the colours
    for row in rows.values():
        assert row["latency_ms"] > 0
        assert abs(row["accuracy"] - reference) <= 0.05, row
    fp32 = rows["model.tflite"]["size_bytes"]
    assert rows["model-fp16.tflite"]["size_bytes"] < 0.55 * fp32
    assert rows["model-int8.tflite"]["size_bytes"] < fp32 / 3
    assert (out / "report.md").read_text().count("| model") >= 4


def test_onnx_has_a_dynamic_batch_and_tflite_resizes(exported) -> None:
    import onnx

    model = onnx.load(str(exported.out_dir / "model.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    x = prepare_input(
        np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
        "nchw",
        False,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    )
    onnx_out = OnnxRunner(exported.out_dir / "model.onnx").run(x)
    tfl = TFLiteRunner(exported.out_dir / "model.tflite")
    assert tfl.batch == 1
    tfl_out = tfl.run(x, batch_size=5)  # resized from the exported batch of 1
    assert onnx_out.shape == tfl_out.shape == (5, 3)
    np.testing.assert_allclose(onnx_out, tfl_out, atol=1e-4)


def test_manifest_describes_every_file_and_the_run(exported) -> None:
    out = exported.out_dir
    manifest = json.loads((out / MANIFEST).read_text())
    run = Path(manifest["run"]["run_dir"])
    assert manifest["labels"] == CLASSES
    assert manifest["preprocessing"] == {
        "image_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    }
    assert manifest["fingerprint"] == rundir.read_model_meta(run)["fingerprint"]
    privacy = {k: manifest["run"][k] for k in ("dp", "epsilon", "dp_delta")}
    assert privacy == {"dp": "central", "epsilon": 3.5, "dp_delta": 1e-5}  # from summary.json
    for package in (
        "torch",
        "torchvision",
        "onnx",
        "onnxruntime",
        "litert-torch",
        "ai-edge-litert",
    ):
        assert manifest["versions"][package]
    for name, entry in manifest["artifacts"].items():
        assert entry["sha256"] == file_sha256(out / name)
        assert entry["size_bytes"] == (out / name).stat().st_size
    model = manifest["artifacts"]["model.onnx"]
    assert model["input"]["shape"] == ["batch", 3, 32, 32]
    assert model["input"]["layout"] == "nchw" and model["input"]["dtype"] == "float32"
    assert manifest["artifacts"]["model.tflite"]["input"]["shape"] == [1, 3, 32, 32]
    int8 = manifest["artifacts"]["model-int8.tflite"]["quantization"]
    assert int8["mode"] == "weights" and int8["bias_correction"]
    assert int8["bias_correction_samples"] == 40  # all 40 calibration images (at most 128)
    assert int8["bias_correction_layers"] > 0 and int8["leading_float_convs"] == 0


def test_onnx_metadata_holds_the_same_facts_without_the_manifest(exported, tmp_path) -> None:
    lone = tmp_path / "model.onnx"
    shutil.copy(exported.out_dir / "model.onnx", lone)
    facts = describe_artifact(lone)  # no manifest.json beside it: the file's metadata_props
    manifest = exported.manifest
    for key in ("labels", "preprocessing", "fingerprint", "embedding_dim", "backbone", "run"):
        assert facts[key] == manifest[key], key
    assert facts["input"]["layout"] == "nchw" and facts["kind"] == "model"


def test_backbone_files_keep_the_edge_contract(exported) -> None:
    from export.backbone import read_backbone_info

    out = exported.out_dir
    for name, batch in (("backbone.onnx", 4), ("backbone.tflite", 4)):
        info = read_backbone_info(out / name)
        assert info.fingerprint == exported.manifest["fingerprint"]
        assert info.embedding_dim == 512
        assert info.preprocessing.image_size == 32
        assert info.input == InputSpec("nchw", baked=False)
        x = np.zeros((batch, 3, 32, 32), np.float32)
        runner = OnnxRunner(out / name) if name.endswith("onnx") else TFLiteRunner(out / name)
        assert runner.run(x).shape == (batch, 512)
    sidecar = json.loads((out / "backbone.json").read_text())
    assert sidecar["sha256"] == file_sha256(out / "backbone.tflite")


def test_export_backbone_needs_no_run_dir(tmp_path, color_folder) -> None:
    import torch

    from export.backbone import export_backbone, read_backbone_info
    from fedge.models.model import load_backbone_for

    cfg = FedgeConfig.from_mapping(tiny_config_values(color_folder))
    loaded = load_backbone_for(cfg)
    written = export_backbone(loaded, tmp_path / "edge", formats=("onnx",))
    assert set(written) == {"onnx"} and written["onnx"].name == "backbone.onnx"
    info = read_backbone_info(written["onnx"])
    assert info.fingerprint == loaded.fingerprint and info.backbone == "resnet18"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = loaded.module(x).numpy()
    np.testing.assert_allclose(OnnxRunner(written["onnx"]).run(x.numpy()), expected, atol=1e-4)


def test_predict_gives_the_same_labels_with_onnx_and_tflite(exported, capsys) -> None:
    from export.predict import ExportedClassifier

    images = sorted((exported.out_dir.parents[1] / "data" / "test").glob("*/*.jpg"))[::7]
    onnx_preds = ExportedClassifier(exported.out_dir / "model.onnx").predict_files(images)
    tfl_preds = ExportedClassifier(exported.out_dir / "model.tflite").predict_files(images)
    assert [p.label for p in onnx_preds] == [p.label for p in tfl_preds]
    assert [p.label for p in onnx_preds] == [p.parent.name for p in images]
    for a, b in zip(onnx_preds, tfl_preds, strict=True):
        assert abs(a.probability - b.probability) < 1e-4
    assert main(["predict", str(exported.out_dir / "model-int8.tflite"), str(images[0])]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{images[0]}: {images[0].parent.name} ")


def test_inference_path_does_not_import_torch(exported) -> None:
    image = next((exported.out_dir.parents[1] / "data" / "test" / "red").glob("*.jpg"))
    code = (
        "import sys\n"
        "from fedge.cli.main import main\n"
        f"rc = main(['predict', {str(exported.out_dir / 'model.tflite')!r}, {str(image)!r}])\n"
        f"rc |= main(['predict', {str(exported.out_dir / 'model.onnx')!r}, {str(image)!r}])\n"
        "import export.backbone, export.predict, export.runtimes, export.manifest\n"
        "assert rc == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(": red ") == 2


def test_a_corrupted_artifact_fails_verification_and_the_command(exported, tmp_path, capsys):
    out = tmp_path / "export"
    shutil.copytree(exported.out_dir, out)
    tflite = out / "model.tflite"
    data = bytearray(tflite.read_bytes())
    middle = len(data) // 2  # inside the weights: the file loads, its outputs change
    data[middle : middle + 400_000] = bytes(400_000)
    tflite.write_bytes(bytes(data))
    (out / "backbone.onnx").write_bytes(b"not an onnx file")
    run = exported.manifest["run"]["run_dir"]
    args = ["export", run, "--verify-only", "--out", str(out), "--latency-runs", "3"]
    code = main([*args, "--no-tflite-runtime"])
    printed = capsys.readouterr().out
    assert code == 1
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False
    failed = {r["artifact"]: r for r in report["rows"] if not r["passed"]}
    assert set(failed) == {"model.tflite", "backbone.onnx"}
    assert "sha256 differs" in failed["model.tflite"]["error"]
    assert "backbone.onnx" in printed.split("below their bar or broken")[1]
    assert "model.tflite" in printed.split("below their bar or broken")[1]


def test_report_json_renders_in_fedge_report(exported) -> None:
    from fedge.reports.content import export_section
    from fedge.reports.run import RunData

    run = RunData.load(exported.manifest["run"]["run_dir"])
    assert run.export_rows and len(run.export_rows) == len(exported.rows)
    table = export_section(run).blocks[0]
    assert table.headers[:2] == ["artifact", "runtime"] and "passed" in table.headers
    assert any(row[0] == "model-int8.tflite" for row in table.rows)


def test_nhwc_uint8_input_with_preprocessing_inside_the_graph(exported, tmp_path) -> None:
    from export.pipeline import export_run
    from export.predict import ExportedClassifier

    run = exported.manifest["run"]["run_dir"]
    options = ExportOptions(
        formats=("onnx",),
        input_layout="nhwc",
        bake_preprocessing=True,
        backbone=False,
        latency_runs=3,
        tflite_runtime=False,
    )
    result = export_run(run, options, tmp_path / "nhwc", printer=None)
    assert result.ok
    entry = result.manifest["artifacts"]["model.onnx"]["input"]
    assert entry == {**entry, "layout": "nhwc", "dtype": "uint8", "shape": ["batch", 32, 32, 3]}
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "nhwc" / "model.onnx"))
    assert session.get_inputs()[0].type == "tensor(uint8)"
    images = sorted((Path(run).parent / "data" / "test").glob("*/*.jpg"))[::9]
    baked = ExportedClassifier(tmp_path / "nhwc" / "model.onnx").predict_files(images)
    plain = ExportedClassifier(exported.out_dir / "model.onnx").predict_files(images)
    for a, b in zip(baked, plain, strict=True):
        assert a.label == b.label and abs(a.probability - b.probability) < 1e-4


@pytest.fixture(scope="module")
def tflite_runtime_python() -> str:
    from export.verify import tflite_runtime_python

    python = tflite_runtime_python()
    if python is None:
        pytest.skip(
            "no environment with tflite_runtime: set FEDGE_TFLITE_RUNTIME_PYTHON to its python "
            "(e.g. python3 -m venv v && v/bin/pip install 'numpy<2' tflite-runtime)"
        )
    return python


def test_tflite_runtime_rows_when_an_environment_has_it(tflite_runtime_python, exported) -> None:
    from export.pipeline import load_run_model, reference
    from export.samples import held_out
    from export.verify import Job, verify_in_tflite_runtime

    python = tflite_runtime_python
    rm = load_run_model(Path(exported.manifest["run"]["run_dir"]))
    data = held_out(rm.cfg, rm.loaded.preprocessing, 30, 0)
    ref = reference(rm, data.images, data.labels)
    jobs = [
        Job(exported.out_dir / name, "model", "tflite", precision, InputSpec())
        for name, precision in (("model.tflite", "fp32"), ("model-fp16.tflite", "fp16"))
    ]
    rows = verify_in_tflite_runtime(python, jobs, ref, threads=1, latency_runs=3)
    assert [r["runtime"].split()[0] for r in rows] == ["tflite_runtime", "tflite_runtime"]
    assert all(r["passed"] and r["max_abs_diff"] < 0.1 for r in rows), rows


def test_prepare_input_is_the_training_preprocessing() -> None:
    from fedge.models.preprocessing import Preprocessing

    pre = Preprocessing(image_size=8)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    expected = np.stack([pre.normalize(p) for p in pixels])
    nchw = prepare_input(pixels, "nchw", False, pre.mean, pre.std)
    np.testing.assert_array_equal(nchw, expected)
    nhwc = prepare_input(pixels, "nhwc", False, pre.mean, pre.std)
    np.testing.assert_array_equal(nhwc, np.moveaxis(expected, 1, -1))
    assert prepare_input(pixels, "nhwc", True, pre.mean, pre.std).dtype == np.uint8


def test_full_int8_has_integer_activations_calibrated_on_held_out_images(exported, tmp_path):
    from export.pipeline import export_run
    from export.quantize import Int8Settings, op_scopes

    options = ExportOptions(
        formats=("tflite",),
        precisions=("int8",),
        int8=Int8Settings(mode="full"),
        backbone=False,
        eval_samples=60,
        calibration_samples=40,
        latency_runs=3,
        tflite_runtime=False,
    )
    result = export_run(exported.manifest["run"]["run_dir"], options, tmp_path, printer=None)
    assert [p.name for p in tmp_path.glob("*.tflite")] == ["model-int8.tflite"]
    details = result.manifest["artifacts"]["model-int8.tflite"]["quantization"]
    assert details["mode"] == "full" and details["calibration_samples"] == 40
    assert details["float_ops"] > 0 and details["leading_float_convs"] == 1
    ops = [name for name, _ in op_scopes(tmp_path / "model-int8.tflite")]
    assert "QUANTIZE" in ops  # float input -> int8 feature maps after the float stem
    assert ops.index("QUANTIZE") > ops.index("CONV_2D")
    rows = rows_by_artifact(result)
    reference = rows["PyTorch (reference)"]["accuracy"]
    assert abs(rows["model-int8.tflite"]["accuracy"] - reference) <= 0.05


def test_prequantize_puts_weights_on_the_int8_grid_and_corrects_the_mean_shift() -> None:
    import torch
    from torch import nn

    from export.prequant import QMAX, fold_batchnorm, grid_round, prequantize

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # BatchNorm statistics that are not the identity
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(64, 3, 12, 12)
    with torch.no_grad():
        reference = model(x)
        assert torch.allclose(fold_batchnorm(model)(x), reference, atol=1e-5)
        rounded_only = fold_batchnorm(model)  # the same rounding, no bias correction
        weighted = [m for m in rounded_only.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for m in weighted[1:]:
            m.weight.copy_(grid_round(m.weight))
        plain = rounded_only(x)
    corrected, stats = prequantize(model, x, keep_float=1)
    layers = [m for m in corrected.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert stats.layers == 3 and stats.kept_float == 1 and stats.samples == 64
    first = layers[0].weight  # kept float: not on a grid
    assert not torch.equal(first, grid_round(first))
    for m in layers[1:]:
        w = m.weight
        scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / QMAX
        steps = w / scale
        assert (steps - steps.round()).abs().max() < 1e-3  # the quantizer keeps them exactly
    with torch.no_grad():
        out = corrected(x)
    assert (out - reference).mean(0).abs().max() < (plain - reference).mean(0).abs().max()


def test_bad_options_fail_at_once(capsys) -> None:
    with pytest.raises(ExportError, match="precisions"):
        ExportOptions(precisions=("int4",))
    with pytest.raises(SystemExit):
        main(["export", "somewhere", "--formats", "onnx,coreml"])
    assert "choose a comma-separated subset of onnx,tflite" in capsys.readouterr().err


def test_failed_export_after_a_run_is_reported_and_keeps_the_run(tmp_path) -> None:
    from export.after_run import export_after_run, export_outcome

    run = make_run_dir(tmp_path)
    (run / "model" / "model.safetensors").write_bytes(b"broken")
    said, warned = [], []
    assert export_after_run(run, said.append, warned.append) is False
    assert "export failed" in warned[0] and f"fedge export {run}" in warned[0]
    assert (run / "export" / "error.txt").is_file()
    assert (run / rundir.SUMMARY).is_file() and (run / "config.toml").is_file()
    assert export_outcome(run)[0].startswith("export: FAILED")


@pytest.mark.slow
def test_simulate_with_export_true_exports_after_the_last_round(tmp_path, color_folder) -> None:
    run = tmp_path / "run"
    values = tiny_config_values(
        color_folder, **{"export": "true", "num-rounds": 1, "cache-dir": str(tmp_path / "c")}
    )
    sets = [f"{k}={v}" for k, v in values.items()]
    env = {**os.environ, "FEDGE_TFLITE_RUNTIME_PYTHON": ""}
    done = subprocess.run(
        [sys.executable, "-m", "fedge.cli.main", "simulate", "--run-dir", str(run), "--set", *sets],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run / "export" / "report.json").read_text())
    artifacts = {r["artifact"] for r in report["rows"]}
    assert {"model.onnx", "model.tflite", "model-int8.tflite", "backbone.tflite"} <= artifacts
    assert "export: " in done.stdout and "model-fp16.tflite" in done.stdout
    assert (run / rundir.SUMMARY).is_file()
