"""Dataset kinds by name: ``image-folder``, ``cifar10``, ``medmnist-npz``.

Each loader returns :class:`DatasetSplits` whose images load lazily. Errors
name the path, what was expected there and how to fix it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from fedge.data.images import ArrayImages, DatasetSplits, FileImages
from fedge.errors import FedgeError

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
MEDMNIST_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


class DatasetError(FedgeError, ValueError):
    """A dataset that is missing, malformed or of the wrong layout."""


def image_extensions() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def _scan_classes(
    root: Path, classes: list[str] | None, ignore: frozenset[str] = frozenset()
) -> FileImages:
    """Files under ``root/<class>/``. What cannot be a training image is skipped and
    counted, never dropped silently: non-image files, entries that are not regular
    files (sub-folders, broken links), and class folders in ``ignore``."""
    exts = image_extensions()
    found = _class_names(root)
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes) - ignore)
    if unknown:
        raise DatasetError(
            f"'{root}' has class folders {unknown} that the training split lacks; "
            f"expected only {classes}."
        )
    paths: list[str] = []
    labels: list[int] = []
    skipped: list[str] = []
    for name in sorted(ignore & set(found)):
        skipped += [e.path for e in os.scandir(root / name) if not e.name.startswith(".")]
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in exts:
                paths.append(entry.path)
                labels.append(label)
            else:
                skipped.append(entry.path)
    return FileImages(paths, np.asarray(labels, dtype=np.int64), skipped)


def _class_names(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _empty_classes(train: FileImages, classes: list[str]) -> list[str]:
    counts = np.bincount(train.labels, minlength=len(classes))
    return [name for name, n in zip(classes, counts, strict=True) if n == 0]


@functools.lru_cache(maxsize=8)
def _load_image_folder_cached(root: str, mtime_ns: int) -> DatasetSplits:
    base = Path(root)
    train_dir = base / "train" if (base / "train").is_dir() else base
    classes = _class_names(train_dir)
    if not classes:
        raise DatasetError(
            f"image-folder '{base}' has no class sub-folders. Expected "
            "<data-path>/<class>/<image> or <data-path>/train/<class>/<image>."
        )
    train = _scan_classes(train_dir, classes)
    if len(train) == 0:
        raise DatasetError(
            f"image-folder '{train_dir}' has class folders {classes} but no image "
            f"files in them (supported: {', '.join(sorted(image_extensions())[:8])}...)."
        )
    empty = _empty_classes(train, classes)
    if empty:  # a class with nothing to learn from is not a class of this dataset
        warnings.warn(
            f"image-folder '{train_dir}': class folders {empty} hold no images; they are "
            "left out of the classes and counted in skipped_files.",
            stacklevel=2,
        )
        classes = [c for c in classes if c not in empty]
        train = _scan_classes(train_dir, classes, ignore=frozenset(empty))
        train.skipped_files += [str(train_dir / name) + os.sep for name in empty]
    test_dir = base / "test"
    test = _scan_classes(test_dir, classes, frozenset(empty)) if test_dir.is_dir() else None
    return DatasetSplits(base.name, classes, train, test)


def load_image_folder(path: str | Path) -> DatasetSplits:
    """``<path>/<class>/*`` or ``<path>/train/<class>/*`` (+ ``<path>/test/``)."""
    base = Path(path).expanduser().resolve()
    if not base.is_dir():
        raise DatasetError(
            f"data-path '{path}' is not a folder. image-folder expects "
            "<data-path>/<class>/<image> or <data-path>/{train,test}/<class>/<image>."
        )
    try:
        return _load_image_folder_cached(str(base), base.stat().st_mtime_ns)
    except OSError as e:
        raise DatasetError(
            f"cannot read data-path '{path}': {e}. Make the folder and its files readable "
            "by the user that runs fedge (or the SuperNode)."
        ) from e


def _extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Extract a .tar/.tar.gz once into the cache; return the extracted folder."""
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    target = cache_dir / "datasets" / f"{archive.name.split('.')[0]}-{key.hexdigest()[:12]}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"cannot extract '{archive}': {e}") from e
    return target


def _find_layout_root(root: Path) -> Path:
    """The folder (root or one level down) that holds train/ or CIFAR batches."""
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (candidate / "train").is_dir() or (candidate / "cifar-10-batches-py").is_dir():
            return candidate
        if candidate.name == "cifar-10-batches-py":
            return candidate.parent
    return root


def _torchvision_cifar10(root: Path, download: bool) -> DatasetSplits:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except Exception as e:  # URLError, RuntimeError("Dataset not found")...
        raise DatasetError(
            f"cifar10 is not at '{root}' and could not be downloaded ({e}). Fix: "
            "run once online, or set data-path to a local copy: a folder or "
            ".tar.gz in image-folder layout (train/<class>/, test/<class>/), e.g. "
            "data-path=../shared/assets/data/cifar10-jpg.tar.gz, or torchvision's "
            "cifar-10-batches-py folder."
        ) from e
    return DatasetSplits(
        "cifar10",
        list(train.classes),
        ArrayImages(train.data, np.asarray(train.targets, dtype=np.int64)),
        ArrayImages(test.data, np.asarray(test.targets, dtype=np.int64)),
    )


def load_cifar10(path: str, cache_dir: Path) -> DatasetSplits:
    """torchvision's CIFAR-10 (downloaded when ``path`` is empty) or a local copy."""
    if not path:
        return _torchvision_cifar10(cache_dir / "datasets" / "cifar10", download=True)
    p = Path(path).expanduser()
    if p.is_file() and tarfile.is_tarfile(p):
        p = _extract_archive(p, cache_dir)
    if not p.is_dir():
        raise DatasetError(f"data-path '{path}' for cifar10 is neither a folder nor a tar archive.")
    root = _find_layout_root(p)
    if (root / "cifar-10-batches-py").is_dir():
        return _torchvision_cifar10(root, download=False)
    splits = load_image_folder(root)
    if splits.classes != CIFAR10_CLASSES:
        raise DatasetError(
            f"'{root}' does not look like CIFAR-10: classes {splits.classes}. Use "
            "dataset=image-folder for other image folders."
        )
    return DatasetSplits("cifar10", splits.classes, splits.train, splits.test)


def _medmnist_labels(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    labels = np.asarray(npz[key])
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DatasetError(
            f"'{path}' key '{key}' is multi-label (shape {labels.shape}); fedge "
            "trains single-label classifiers."
        )
    labels = labels.reshape(-1)
    if labels.dtype.kind not in "iub" and not np.array_equal(labels, np.round(labels)):
        bad = labels[labels != np.round(labels)][:3].tolist()
        raise DatasetError(f"'{path}' key '{key}' has non-integer labels, e.g. {bad}.")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        bad = sorted(set(labels[labels < 0].tolist()))[:3]
        raise DatasetError(f"'{path}' key '{key}' has negative labels {bad}; class ids start at 0.")
    return labels


def _medmnist_images(npz: np.lib.npyio.NpzFile, key: str, n: int, path: Path) -> np.ndarray:
    images = np.asarray(npz[key])
    if images.ndim not in (3, 4) or len(images) != n:
        raise DatasetError(
            f"'{path}' key '{key}' has shape {images.shape}; expected (N, H, W) or "
            f"(N, H, W, C) with N={n} matching its labels."
        )
    if images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    return images


def load_medmnist_npz(path: str) -> DatasetSplits:
    """A MedMNIST ``.npz``: ``train_images``, ``train_labels``, ``test_*`` (+ ``val_*``)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(
            f"data-path '{path}' is not a file; medmnist-npz expects a MedMNIST .npz "
            "(e.g. pathmnist.npz or pathmnist_64.npz)."
        )
    try:
        with np.load(p) as npz:
            missing = [k for k in MEDMNIST_KEYS if k not in npz.files]
            if missing:
                raise DatasetError(
                    f"'{p}' lacks MedMNIST keys {missing}; it has {sorted(npz.files)}. "
                    f"Expected {list(MEDMNIST_KEYS)} (val_* optional)."
                )
            train_y = _medmnist_labels(npz, "train_labels", p)
            test_y = _medmnist_labels(npz, "test_labels", p)
            train_x = _medmnist_images(npz, "train_images", len(train_y), p)
            test_x = _medmnist_images(npz, "test_images", len(test_y), p)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(
            f"cannot read '{p}' as a MedMNIST .npz ({type(e).__name__}: {e}). Is the "
            "file complete? Download it again, or point data-path at another copy."
        ) from e
    num_classes = int(max(train_y.max(initial=0), test_y.max(initial=0))) + 1
    return DatasetSplits(
        p.stem,
        [str(i) for i in range(num_classes)],
        ArrayImages(train_x, train_y),
        ArrayImages(test_x, test_y),
    )


def load_dataset(kind: str, path: str, cache_dir: Path) -> DatasetSplits:
    """Load the dataset a config names."""
    if kind == "image-folder":
        if not path:
            raise DatasetError("dataset=image-folder needs data-path=<folder>.")
        p = Path(path).expanduser()
        if p.is_file() and tarfile.is_tarfile(p):
            p = _find_layout_root(_extract_archive(p, cache_dir))
        return load_image_folder(p)
    if kind == "cifar10":
        return load_cifar10(path, cache_dir)
    if kind == "medmnist-npz":
        return load_medmnist_npz(path)
    raise DatasetError(f"unknown dataset '{kind}'; allowed: image-folder, cifar10, medmnist-npz.")
