"""Bad input on a client: each case is a clear error or a counted skip, never silent."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import MessageType

from client.app import build_client_app, handle_train
from client.session import ClassMismatch
from fedge.config import FedgeConfig
from fedge.data.images import UnreadableImage
from fedge.data.sources import DatasetError, load_dataset, load_image_folder
from tests.conftest import client_context, tiny_config_values, train_message, write_color_images

NOBODY = 65534


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def messy_folder(tmp_path):
    """A train/test image folder with one of each kind of bad file in it."""
    root = tmp_path / "messy"
    write_color_images(root / "train", n_per_class=12, seed=0)
    write_color_images(root / "test", n_per_class=4, seed=1)
    red = root / "train" / "red"
    (red / "0000.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")  # corrupt
    _truncate(red / "0001.jpg")  # truncated
    (red / "notes.txt").write_text("not an image")  # non-image file
    (red / "nested").mkdir()  # not a file
    os.symlink(red / "missing.jpg", red / "0100.jpg")  # broken link
    return root


def test_truncated_image_is_unreadable(messy_folder):
    splits = load_image_folder(messy_folder)
    idx = splits.train.paths.index(str(messy_folder / "train" / "red" / "0001.jpg"))
    with pytest.raises(UnreadableImage, match="0001.jpg"):
        splits.train.load(idx)


def test_non_image_entries_are_skipped_and_counted(messy_folder):
    splits = load_image_folder(messy_folder)
    names = sorted(os.path.basename(p) for p in splits.skipped_files)
    assert names == ["0100.jpg", "nested", "notes.txt"]
    assert len(splits.train) == 3 * 12 - 1 + 1  # 0000 and 0001 are listed, read later


def test_client_counts_every_bad_file_in_its_metrics_and_still_trains(messy_folder, flower_task):
    cfg = FedgeConfig.from_mapping(
        tiny_config_values(
            messy_folder, **{"num-clients": 1, "min-clients": 1, "local-test-fraction": 0.0}
        )
    )
    msg, _ = train_message(cfg, MessageType.TRAIN)
    reply = build_client_app(cfg)(
        msg, client_context(cfg, {"partition-id": 0, "num-partitions": 1})
    )
    metrics = reply.content["metrics"]
    # 3 entries that are not images + 2 images that cannot be decoded
    assert metrics["skipped-files"] == 5
    assert metrics["num-examples"] == 3 * 12 - 2


def test_client_counts_unreadable_images_without_the_embedding_cache(messy_folder, flower_task):
    cfg = FedgeConfig.from_mapping(
        tiny_config_values(
            messy_folder,
            **{
                "num-clients": 1,
                "min-clients": 1,
                "local-test-fraction": 0.0,
                "embedding-cache": "off",
            },
        )
    )
    msg, _ = train_message(cfg, MessageType.TRAIN)
    reply = handle_train(msg, client_context(cfg, {"partition-id": 0, "num-partitions": 1}), cfg)
    assert reply.content["metrics"]["skipped-files"] == 5


def test_empty_class_folder_is_left_out_and_counted(tmp_path):
    write_color_images(tmp_path / "train", n_per_class=3, seed=0)
    write_color_images(tmp_path / "test", n_per_class=2, seed=1)
    (tmp_path / "train" / "violet").mkdir()
    (tmp_path / "test" / "violet").mkdir()
    shutil.copy(tmp_path / "test" / "red" / "0000.jpg", tmp_path / "test" / "violet" / "x.jpg")
    with pytest.warns(UserWarning, match=r"class folders \['violet'\] hold no images"):
        splits = load_image_folder(tmp_path)
    assert splits.classes == ["blue", "green", "red"]
    assert sorted(splits.skipped_files) == [
        str(tmp_path / "test" / "violet" / "x.jpg"),
        str(tmp_path / "train" / "violet") + os.sep,
    ]


def test_missing_data_path_is_a_clear_error_for_each_dataset_kind(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("image-folder", missing, tmp_path)
    with pytest.raises(DatasetError, match="neither a folder nor a tar archive"):
        load_dataset("cifar10", missing, tmp_path)
    with pytest.raises(DatasetError, match="is not a file"):
        load_dataset("medmnist-npz", missing, tmp_path)
    with pytest.raises(DatasetError, match="needs data-path"):
        load_dataset("image-folder", "", tmp_path)


@contextlib.contextmanager
def _without_root() -> Iterator[None]:
    """Root reads any file: run the block as ``nobody`` (effective uid only), so a
    folder without permissions is unreadable there too."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_data_path_is_a_clear_error():
    # pytest's tmp_path sits under a root-only folder: nobody could not even reach it
    data = Path(tempfile.mkdtemp(prefix="fedge-unreadable-"))
    try:
        data.chmod(0o755)
        write_color_images(data, n_per_class=2, seed=0)
        (data / "red").chmod(0)
        with _without_root(), pytest.raises(DatasetError, match="cannot read data-path"):
            load_image_folder(data)
    finally:
        (data / "red").chmod(0o755)
        shutil.rmtree(data)


def test_deployed_client_with_a_missing_data_path_refuses_clearly(color_folder, flower_task):
    cfg = FedgeConfig.from_mapping(tiny_config_values(color_folder))
    msg, _ = train_message(cfg, MessageType.TRAIN)
    context = client_context(cfg, {"data-path": "/nonexistent/hospital-a"})
    with pytest.raises(DatasetError, match="/nonexistent/hospital-a"):
        handle_train(msg, context, cfg)


def _npz(path, train_labels, test_labels=None, **extra):
    rng = np.random.default_rng(0)
    n = len(train_labels)
    test_labels = np.asarray([0, 1]) if test_labels is None else test_labels
    np.savez(
        path,
        train_images=rng.integers(0, 255, (n, 28, 28), dtype=np.uint8),
        train_labels=np.asarray(train_labels),
        test_images=rng.integers(0, 255, (len(test_labels), 28, 28), dtype=np.uint8),
        test_labels=np.asarray(test_labels),
        **extra,
    )
    return path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([[0], [1], [-3]], r"negative labels \[-3\]"),
        ([0.0, 1.5, 2.0], r"non-integer labels, e.g. \[1.5\]"),
        ([[0, 1], [1, 0], [1, 1]], "multi-label"),
    ],
)
def test_medmnist_bad_labels_are_clear_errors(tmp_path, labels, message):
    path = _npz(tmp_path / "bad.npz", labels)
    with pytest.raises(DatasetError, match=message):
        load_dataset("medmnist-npz", str(path), tmp_path)


def test_medmnist_truncated_file_is_a_clear_error(tmp_path):
    path = _npz(tmp_path / "pathmnist.npz", [0, 1, 2])
    _truncate(path)
    with pytest.raises(DatasetError, match="cannot read .* as a MedMNIST .npz"):
        load_dataset("medmnist-npz", str(path), tmp_path)


def test_medmnist_missing_keys_name_what_is_there(tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), val_labels=np.zeros(2))
    with pytest.raises(DatasetError, match=r"lacks MedMNIST keys .*it has \['train_images'"):
        load_dataset("medmnist-npz", str(path), tmp_path)


def test_client_label_the_server_does_not_know_is_refused(tmp_path, flower_task):
    """A hospital whose MedMNIST file has a class id past the server's classes."""
    server_file = _npz(tmp_path / "server.npz", [0, 1, 2, 1], [0, 2])
    client_file = _npz(tmp_path / "client.npz", [0, 1, 2, 5], [0, 1])
    cfg = FedgeConfig.from_mapping(
        tiny_config_values(server_file, dataset="medmnist-npz", **{"local-test-fraction": 0.0})
    )
    msg, _ = train_message(cfg, MessageType.TRAIN, classes=("0", "1", "2"))
    context = client_context(cfg, {"data-path": str(client_file)})
    with pytest.raises(ClassMismatch, match=r"classes \['3', '4', '5'\]"):
        handle_train(msg, context, cfg)
