import tarfile

import numpy as np
import pytest
from PIL import Image

from fedge.data.images import UnreadableImage
from fedge.data.partition import partition, server_test_indices, split_client
from fedge.data.sources import CIFAR10_CLASSES, DatasetError, load_dataset, load_image_folder
from tests.conftest import write_color_images


def test_image_folder_with_train_and_test(color_folder):
    splits = load_image_folder(color_folder)
    assert splits.classes == ["blue", "green", "red"]
    assert len(splits.train) == 120 and len(splits.test) == 30
    assert np.bincount(splits.train.labels).tolist() == [40, 40, 40]
    assert splits.train.load(0).size == (24, 24)


def test_image_folder_without_test_split_gets_a_seeded_holdout(tmp_path):
    write_color_images(tmp_path, n_per_class=10, seed=0)
    a = load_image_folder(tmp_path).with_holdout()
    b = load_image_folder(tmp_path).with_holdout()
    assert len(a.test) == 6 and len(a.train) == 24
    assert a.test.paths == b.test.paths
    assert not set(a.test.paths) & set(a.train.paths)


def test_non_image_files_are_counted_as_skipped_not_dropped_silently(tmp_path):
    write_color_images(tmp_path, n_per_class=3, seed=0)
    (tmp_path / "red" / "notes.txt").write_text("hello")
    splits = load_image_folder(tmp_path)
    assert len(splits.train) == 9
    assert [p.endswith("notes.txt") for p in splits.skipped_files] == [True]


def test_corrupt_image_raises_unreadable(tmp_path):
    write_color_images(tmp_path, n_per_class=2, seed=0)
    (tmp_path / "red" / "0000.jpg").write_bytes(b"\xff\xd8\xff garbage")
    splits = load_image_folder(tmp_path)
    idx = splits.train.paths.index(str(tmp_path / "red" / "0000.jpg"))
    with pytest.raises(UnreadableImage, match="cannot read image"):
        splits.train.load(idx)


def test_folder_without_classes_or_images_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        load_image_folder(tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        load_image_folder(tmp_path / "missing")


def test_cifar10_from_a_local_tar_of_jpeg_folders(tmp_path):
    root = tmp_path / "cifar10-jpg"
    for split, n in (("train", 2), ("test", 1)):
        for name in CIFAR10_CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(root / split / name / f"{i}.jpg")
    archive = tmp_path / "cifar10-jpg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar10-jpg")
    splits = load_dataset("cifar10", str(archive), tmp_path / "cache")
    assert splits.classes == CIFAR10_CLASSES
    assert (len(splits.train), len(splits.test)) == (20, 10)
    again = load_dataset("cifar10", str(archive), tmp_path / "cache")  # extracted once
    assert again.train.paths == splits.train.paths


def test_medmnist_npz_grey_images_and_missing_keys(tmp_path):
    path = tmp_path / "pathmnist.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        train_images=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, 4, (20, 1)),
        test_images=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, 4, (5, 1)),
    )
    splits = load_dataset("medmnist-npz", str(path), tmp_path)
    assert splits.num_classes == int(max(splits.train.labels.max(), splits.test.labels.max())) + 1
    assert splits.train.load(3).mode == "L"
    broken = tmp_path / "broken.npz"
    np.savez(broken, train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"lacks MedMNIST keys \['train_labels'"):
        load_dataset("medmnist-npz", str(broken), tmp_path)


LABELS = np.repeat(np.arange(10), 100)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_partitions_are_disjoint_complete_and_seeded(kind):
    parts = partition(LABELS, 8, kind, alpha=0.5, classes_per_client=2, seed=3)
    assert len(parts) == 8
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined))
    if kind != "pathological":
        assert len(joined) == len(LABELS)
    again = partition(LABELS, 8, kind, alpha=0.5, classes_per_client=2, seed=3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))


def test_pathological_gives_each_client_its_number_of_classes():
    parts = partition(LABELS, 5, "pathological", classes_per_client=2, seed=0)
    assert all(len(np.unique(LABELS[p])) == 2 for p in parts)


def test_iid_partitions_mix_classes_even_when_labels_are_sorted():
    parts = partition(LABELS, 4, "iid", seed=0)
    assert all(len(np.unique(LABELS[p])) == 10 for p in parts)


def test_dirichlet_skew_grows_as_alpha_shrinks():
    def skew(alpha: float) -> float:
        parts = partition(LABELS, 10, "dirichlet", alpha=alpha, seed=0)
        return float(np.mean([np.bincount(LABELS[p], minlength=10).max() / len(p) for p in parts]))

    assert skew(0.1) > skew(100.0)


def test_client_split_caps_train_and_keeps_test_proportional():
    ci = split_client(np.arange(1000), test_fraction=0.2, max_train=200, seed=0, client_id=1)
    assert len(ci.train) == 200 and len(ci.test) == 50
    assert not set(ci.train) & set(ci.test)


def test_server_test_subset_is_seeded():
    assert (server_test_indices(100, 10, 1) == server_test_indices(100, 10, 1)).all()
    assert len(server_test_indices(100, 0, 1)) == 100


def test_one_partition_is_extracted_without_materializing_the_others():
    from fedge.data.partition import _partitions, partition_of

    labels = np.repeat(np.arange(10), 300)
    mine = partition_of(labels, 17, 200, "dirichlet", alpha=1.0, seed=4)
    assert np.array_equal(mine, partition(labels, 200, "dirichlet", alpha=1.0, seed=4)[17])
    fresh = np.repeat(np.arange(10), 301)  # a table no test has partitioned yet
    partition_of(fresh, 5, 200, "iid", seed=4)
    assert set(_partitions(fresh.tobytes(), 200, "iid", 0.5, 2, 4)._loaded) == {0, 5}


def test_many_clients_with_strong_skew_get_a_partition_even_below_the_minimum_size(caplog):
    labels = np.repeat(np.arange(10), 200)  # 2,000 samples, 300 clients, alpha 0.05
    with caplog.at_level("WARNING"):
        parts = partition(labels, 300, "dirichlet", alpha=0.05, seed=0)
    joined = np.concatenate(parts)
    assert len(parts) == 300 and len(joined) == len(np.unique(joined)) == len(labels)
    assert min(len(p) for p in parts) < 3  # flwr-datasets' minimum could not be met
    assert "raise dirichlet-alpha or lower num-clients" in caplog.text


def test_a_client_without_training_samples_refuses_to_train(color_folder):
    import torch

    from client.session import ClientSession, EmptyPartition
    from fedge.config import FedgeConfig
    from fedge.data.federated import ClientData, Subset, dataset_splits
    from fedge.models.model import load_backbone_for
    from tests.conftest import tiny_config_values

    cfg = FedgeConfig.from_mapping(tiny_config_values(color_folder))
    source = dataset_splits(cfg).train
    empty = Subset(source, np.zeros(0, dtype=np.int64))
    data = ClientData(["blue", "green", "red"], empty, Subset(source, np.arange(3)), 0)
    session = ClientSession(cfg, 7, torch.device("cpu"), load_backbone_for(cfg), data)
    with pytest.raises(EmptyPartition, match="client 7 has no training samples"):
        session.require_training_data()


@pytest.mark.parametrize("kind", ["dirichlet", "pathological"])
def test_partitions_read_from_the_drawn_assignment_equal_flower_datasets_own(kind):
    import datasets

    from fedge.data.partition import _make_partitioner

    labels = np.random.default_rng(2).integers(0, 10, 3000).astype(np.int64)
    order = np.random.default_rng(6).permutation(len(labels))
    own = _make_partitioner(kind, 30, 0.5, 3, 6, len(labels))
    own.dataset = datasets.Dataset.from_dict({"label": labels[order], "index": order})
    expected = [np.sort(np.asarray(own.load_partition(i)["index"])) for i in range(30)]
    ours = partition(labels, 30, kind, alpha=0.5, classes_per_client=3, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(ours, expected, strict=True))
