import numpy as np
import pytest

from fedge.config import FedgeConfig
from fedge.data.federated import Subset, dataset_splits
from fedge.embeddings.cache import embed_subset, missing_count
from fedge.embeddings.store import EmbeddingStore, clear_memory_cache
from fedge.models.model import load_backbone_for


def _cfg(color_folder, tmp_path, **extra):
    values = {
        "dataset": "image-folder",
        "data-path": str(color_folder),
        "backbone": "resnet18",
        "weights": "none",
        "image-size": 32,
        "cache-dir": str(tmp_path),
        "device": "cpu",
    }
    values.update(extra)
    return FedgeConfig.from_mapping(values)


def test_embeddings_are_computed_once_then_read_from_disk(color_folder, tmp_path):
    import torch

    cfg = _cfg(color_folder, tmp_path)
    loaded = load_backbone_for(cfg)
    train = dataset_splits(cfg).train
    subset = Subset(train, np.arange(0, 120, 3))
    assert missing_count(cfg, loaded, subset) == len(subset)
    first = embed_subset(cfg, loaded, subset, torch.device("cpu"))
    clear_memory_cache()
    assert missing_count(cfg, loaded, subset) == 0
    assert (tmp_path / "embeddings").is_dir()
    second = embed_subset(cfg, loaded, subset, torch.device("cpu"))
    np.testing.assert_array_equal(first, second)
    assert first.shape == (40, 512) and np.isfinite(first).all()


def test_memory_mode_writes_nothing_to_disk(color_folder, tmp_path):
    import torch

    cfg = _cfg(color_folder, tmp_path, **{"embedding-cache": "memory"})
    loaded = load_backbone_for(cfg)
    subset = Subset(dataset_splits(cfg).train, np.arange(5))
    embed_subset(cfg, loaded, subset, torch.device("cpu"))
    assert not (tmp_path / "embeddings").exists()


def test_store_gathers_rows_across_shards_and_reports_gaps(tmp_path):
    store = EmbeddingStore(tmp_path, "f" * 64, "d" * 64)
    store.save(np.array([5, 1, 3]), np.array([[5.0], [1.0], [3.0]], dtype=np.float32))
    store.save(np.array([7, 9]), np.array([[7.0], [9.0]], dtype=np.float32))
    rows, found = store.lookup(np.array([1, 2, 7, 9]))
    assert found.tolist() == [True, False, True, True]
    assert rows[found, 0].tolist() == [1.0, 7.0, 9.0]


def test_store_is_keyed_by_fingerprint(tmp_path):
    EmbeddingStore(tmp_path, "a" * 64, "d" * 64).save(np.array([0]), np.ones((1, 2), np.float32))
    _, found = EmbeddingStore(tmp_path, "b" * 64, "d" * 64).lookup(np.array([0]))
    assert not found.any()


def test_unreadable_images_become_nan_rows(color_folder, tmp_path):
    import shutil

    import torch

    data = tmp_path / "data"
    shutil.copytree(color_folder / "train", data)
    victim = sorted((data / "red").iterdir())[0]
    victim.write_bytes(b"broken")
    cfg = _cfg(data, tmp_path / "cache")
    splits = dataset_splits(cfg)
    loaded = load_backbone_for(cfg)
    all_train = Subset(splits.train, np.arange(len(splits.train)))
    z = embed_subset(cfg, loaded, all_train, torch.device("cpu"))
    bad = [i for i, p in enumerate(splits.train.paths) if p == str(victim)]
    assert np.isnan(z[bad]).all()
    assert int(np.isnan(z).any(axis=1).sum()) == len(bad) == 1


@pytest.mark.parametrize("size", [32, 48])
def test_preprocessing_resizes_normalizes_and_converts_grey(size):
    from PIL import Image

    from fedge.models.preprocessing import Preprocessing

    pre = Preprocessing(image_size=size)
    x = pre(Image.new("L", (10, 20), 128))
    assert x.shape == (3, size, size) and x.dtype == np.float32
    expected = (128 / 255 - np.asarray(pre.mean)) / np.asarray(pre.std)
    np.testing.assert_allclose(x[:, 0, 0], expected, rtol=1e-5)


def test_disk_mode_reads_rows_from_shared_shards_without_copying_them_into_memory(
    color_folder, tmp_path
):
    import torch

    from fedge.embeddings.store import memory_cache_bytes

    cfg = _cfg(color_folder, tmp_path)
    clear_memory_cache()
    subset = Subset(dataset_splits(cfg).train, np.arange(10))
    embed_subset(cfg, load_backbone_for(cfg), subset, torch.device("cpu"))
    embed_subset(cfg, load_backbone_for(cfg), subset, torch.device("cpu"))
    assert memory_cache_bytes() == 0


def test_memory_cache_stays_under_its_limit_dropping_the_oldest(monkeypatch):
    from fedge.embeddings import store

    clear_memory_cache()
    monkeypatch.setattr(store, "_MEMORY_LIMIT_BYTES", 3 * 4000)
    memory = EmbeddingStore(None, "f" * 64, "d" * 64)
    for i in range(10):
        memory.remember(np.array([i]), np.zeros((1, 1000), np.float32))  # 4,000 bytes each
    assert store.memory_cache_bytes() == 3 * 4000
    assert memory.lookup(np.array([9]))[1].all() and not memory.lookup(np.array([0]))[1].any()
    clear_memory_cache()


def test_the_shared_pass_saves_chunks_and_resumes_where_it_stopped(
    color_folder, tmp_path, monkeypatch
):
    from simulations import runner
    from tests.conftest import tiny_config_values

    monkeypatch.setattr(runner, "PASS_CHUNK", 16)
    values = tiny_config_values(color_folder, **{"cache-dir": str(tmp_path)})
    cfg = FedgeConfig.from_mapping(values)
    first = runner.precompute_embeddings(cfg)
    shards = list((tmp_path / "embeddings").glob("*/*/shard-*"))
    # all 120 training images (clients' train and local test) in chunks of 16, the server's 30
    assert first == 150 and len(shards) == -(-120 // 16) + 1
    assert runner.precompute_embeddings(cfg) == 0
