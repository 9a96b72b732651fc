"""One loader per dataset, the errors they raise, and the on-disk cache of decoded images.

Every loader returns an :class:`ImageDataset`: the whole split as one uint8 tensor ``(N, 3, size, size)`` on the
CPU, ready to be moved to the device once (see ``ssltutor.data.loader.DeviceLoader``).

Where the data lives: ``root`` may be the folder that holds the dataset folders (``$DATA_ROOT``, e.g.
``data/`` with ``data/intel_image``, ``data/cifar-10-batches-py``, ``data/aptos2019``) or the dataset folder
itself. ``root=None`` uses ``$DATA_ROOT`` (default ``./data``).

Cache: JPEG/PNG decoding, cropping and resizing run once; the result is stored with ``torch.save`` in
``<dataset folder>/.ssltutor_cache/`` when that folder is writable (permission bits are honoured even for root),
else in ``$SSLTUTOR_CACHE`` or ``~/.cache/ssltutor``. The file name holds the dataset, split, size and a hash of
the source files' names, sizes and modification times, so editing the data invalidates it. Nothing in the data
folder itself is ever modified.
"""
from __future__ import annotations

import csv
import hashlib
import os
import pickle
import stat
import uuid
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .splits import stratified_split

__all__ = [
    "DATASETS",
    "DEFAULT_SIZE",
    "SPLITS",
    "INTEL_CLASSES",
    "APTOS_CLASSES",
    "ImageDataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetFormatError",
    "load",
    "data_root",
    "default_root",
    "cache_dirs",
    "crop_fundus",
    "aptos_split_indices",
]

DATASETS = ("digits", "cifar10", "cifar100", "intel_image", "aptos2019")
# Image side in pixels when ``size=None``: the native size for CIFAR and digits; a CPU-friendly size for the photos.
DEFAULT_SIZE = {"digits": 32, "cifar10": 32, "cifar100": 32, "intel_image": 64, "aptos2019": 64}
SPLITS = {
    "digits": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "intel_image": ("train", "test", "pred"),
    "aptos2019": ("train", "val", "test", "all"),
}
INTEL_CLASSES = ["buildings", "forest", "glacier", "mountain", "sea", "street"]
APTOS_CLASSES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]

# Folder names a dataset may have under the data root; the first is the one we document and download into.
FOLDERS = {
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "intel_image": ("intel_image", "intel-image-classification"),
    "aptos2019": ("aptos2019", "aptos2019-blindness-detection"),
}
# A file or folder whose presence shows that a directory is the dataset folder itself.
MARKERS = {
    "cifar10": ("batches.meta", "data_batch_1", "test_batch"),
    "cifar100": ("meta", "train", "test"),
    "intel_image": ("seg_train", "seg_test", "seg_pred"),
    "aptos2019": ("train.csv", "train_images"),
}
CIFAR = {
    "cifar10": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        files={"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        meta="batches.meta",
        names_key="label_names",
        labels_key="labels",
    ),
    "cifar100": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        files={"train": ["train"], "test": ["test"]},
        meta="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
    ),
}
HOW_TO_GET = {
    "cifar10": "pass download=True, or download cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it into {parent} so that {folder}/data_batch_1 ... data_batch_5, test_batch, batches.meta exist",
    "cifar100": "pass download=True, or download cifar-100-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it into {parent} so that {folder}/train, test, meta exist",
    "intel_image": "download the archive from https://www.kaggle.com/datasets/puneet6060/intel-image-classification "
    "and unzip it into {folder}, giving {folder}/seg_train/seg_train/<class>/*.jpg and "
    "{folder}/seg_test/seg_test/<class>/*.jpg with the classes " + ", ".join(INTEL_CLASSES),
    "aptos2019": "download train.csv and train_images.zip from https://www.kaggle.com/c/aptos2019-blindness-detection "
    "(accept the competition rules first) and unzip them into {folder}, giving {folder}/train.csv (columns "
    "id_code,diagnosis) and {folder}/train_images/<id_code>.png",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_VERSION = 1  # bump when decoding or preprocessing changes, so old cache files are not reused
APTOS_SPLIT = {"seed": 0, "val": 0.1, "test": 0.2}


class DatasetError(Exception):
    """Base class of the data errors: something about the dataset on disk is not what the loader expects."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset folder (or a split of it) does not exist; the message says where we looked and how to get it."""


class DatasetFormatError(DatasetError, ValueError):
    """The dataset folder exists but its layout, labels or files are not what was expected."""


@dataclass(repr=False)
class ImageDataset:
    """A whole split in memory.

    images: uint8 (N, 3, H, W), contiguous. labels: int64 (N,), -1 for unlabelled splits.
    classes: class names, ``classes[label]``. name: dataset name (e.g. "cifar10"). split: e.g. "train".
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str
    split: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be int64 ({len(self.images)},), "
                             f"got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape)
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, images={shape} uint8 on {self.images.device}, "
                f"classes={len(self.classes)})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device) -> "ImageDataset":
        """The same dataset with images and labels on ``device``."""
        return ImageDataset(self.images.to(device), self.labels.to(device), self.classes, self.name, self.split)

    def subset(self, index: Tensor) -> "ImageDataset":
        """The samples selected by ``index`` (int64 indices or a bool mask of length N), as a new dataset."""
        index = torch.as_tensor(index, device=self.images.device)
        return ImageDataset(self.images[index].contiguous(), self.labels[index.to(self.labels.device)],
                            self.classes, self.name, self.split)


# ----------------------------------------------------------------------------------------------------------------
# Where the data lives
# ----------------------------------------------------------------------------------------------------------------

def data_root() -> Path:
    """The folder that holds the dataset folders, as an absolute path: ``$DATA_ROOT``, else ``./data``."""
    return Path(os.environ.get("DATA_ROOT", "data")).expanduser().absolute()


def _looks_like(name: str, folder: Path) -> bool:
    return any((folder / marker).exists() for marker in MARKERS[name])


def _dataset_dir(name: str, root: str | os.PathLike | None) -> Path:
    """Resolve the dataset folder from ``root`` (data root or the dataset folder itself; None: ``$DATA_ROOT``).

    Returns the folder even when it does not exist (the loader then raises with instructions).
    """
    base = Path(root).expanduser().absolute() if root is not None else data_root()
    if base.name in FOLDERS[name] or _looks_like(name, base):
        return base
    for folder in FOLDERS[name]:
        if (base / folder).is_dir():
            return base / folder
    return base / FOLDERS[name][0]


def default_root(name: str | None = None) -> Path:
    """Where ``load(name)`` looks when ``root=None``: ``$DATA_ROOT/<dataset folder>`` (``$DATA_ROOT`` without a name).

    For example ``default_root("intel_image") == Path($DATA_ROOT) / "intel_image"``. ``digits`` needs no folder
    (it ships with scikit-learn); its root is ``$DATA_ROOT``.
    """
    if name is None or name == "digits":
        return data_root()
    _check_name(name)
    return _dataset_dir(name, None)


def _how_to_get(name: str, folder: Path) -> str:
    return HOW_TO_GET[name].format(folder=folder, parent=folder.parent)


def _not_found(name: str, folder: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: {what}. Fix: {_how_to_get(name, folder)}; or point DATA_ROOT (or root=) at the folder that holds "
        f"{FOLDERS[name][0]}/."
    )


def _format_error(name: str, folder: Path, what: str) -> DatasetFormatError:
    return DatasetFormatError(f"{name}: {what}. Expected layout: {_how_to_get(name, folder)}.")


# ----------------------------------------------------------------------------------------------------------------
# Disk cache
# ----------------------------------------------------------------------------------------------------------------

def _fallback_cache_dir() -> Path:
    if os.environ.get("SSLTUTOR_CACHE"):
        return Path(os.environ["SSLTUTOR_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "ssltutor"


def _writable_dir(folder: Path) -> bool:
    """True when we may create files in ``folder`` (or in its parent, when it does not exist yet).

    os.access alone says yes to root on a folder marked read-only; the permission bits say what the owner meant.
    """
    target = folder if folder.exists() else folder.parent
    if not target.is_dir():
        return False
    write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return os.access(target, os.W_OK | os.X_OK) and bool(target.stat().st_mode & write_bits)


def cache_dirs(dataset_dir: Path) -> list[Path]:
    """Cache folders for a dataset, in lookup order: ``<dataset_dir>/.ssltutor_cache`` then the user cache.

    Files are read from the first folder that has them and written to the first writable one.
    """
    return [Path(dataset_dir) / ".ssltutor_cache", _fallback_cache_dir()]


def _fingerprint(dataset_dir: Path, files: Sequence[Path], *key: object) -> str:
    """Hash of the cache key and every source file's relative name, size and modification time."""
    digest = hashlib.sha256("|".join(map(str, (CACHE_VERSION, *key))).encode())
    for path in files:
        info = path.stat()
        digest.update(f"\n{path.relative_to(dataset_dir).as_posix()}\t{info.st_size}\t{info.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _read_cache(path: Path) -> dict[str, Tensor] | None:
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        if tensors["images"].dtype == torch.uint8 and tensors["labels"].dtype == torch.int64:
            return tensors
    except Exception as error:  # a truncated or foreign file is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache file {path}: {error}", stacklevel=3)
    return None


def _write_cache(tensors: dict[str, Tensor], folder: Path, filename: str, stem: str) -> bool:
    """Atomically write ``tensors`` to ``folder/filename`` (temp file + os.replace). Returns False on failure."""
    tmp = folder / f".{filename}.{uuid.uuid4().hex}.tmp"  # unique per writer; plain open keeps the umask's mode
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(tensors, tmp)
        os.replace(tmp, folder / filename)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write cache file {folder / filename}: {error}", stacklevel=3)
        return False
    for old in folder.glob(f"{stem}-*.pt"):  # older versions of the same split and size are stale now
        if old.name != filename and folder.name == ".ssltutor_cache":
            old.unlink(missing_ok=True)
    return True


def _cached(name: str, split: str, size: int, dataset_dir: Path, files: Sequence[Path],
            build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Return ``build()`` (dict with uint8 "images" and int64 "labels"), from the disk cache when it is fresh."""
    stem = f"{name}-{split}-{size}px"
    filename = f"{stem}-{_fingerprint(dataset_dir, files, name, split, size)}.pt"
    folders = cache_dirs(dataset_dir)
    for folder in folders:
        if (folder / filename).is_file() and (tensors := _read_cache(folder / filename)) is not None:
            return tensors
    tensors = build()
    local, fallback = folders
    if not (_writable_dir(local) and _write_cache(tensors, local, filename, stem)):
        _write_cache(tensors, fallback, filename, stem)
    return tensors


# ----------------------------------------------------------------------------------------------------------------
# Decoding and resizing
# ----------------------------------------------------------------------------------------------------------------

def crop_fundus(image: Image.Image, tolerance: int = 7) -> Image.Image:
    """Crop the black border around a fundus photo (Ben Graham's preprocessing for Kaggle's retinopathy contests).

    Keeps the bounding box of the pixels whose grayscale value is above ``tolerance`` (0..255). An image that is
    dark everywhere is returned unchanged.
    """
    gray = np.asarray(image.convert("L"))
    bright = gray > tolerance
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    if rows.size == 0:
        return image
    return image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def _read_image(path: Path, size: int, fundus: bool = False) -> np.ndarray:
    """Decode a JPEG/PNG to RGB, optionally crop the fundus border, resize. Returns (size, size, 3) uint8."""
    try:
        with Image.open(path) as image:
            # JPEG only: decode at the smallest DCT scale that keeps both sides >= the target, several times faster.
            image.draft("RGB", (4 * size, 4 * size) if fundus else (size, size))
            image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError) as error:
        raise DatasetFormatError(
            f"cannot decode image {path}: {error}. Expected a complete JPEG or PNG file: replace it with the original "
            "from the dataset archive (re-download or unzip again), or delete it."
        ) from error
    if fundus:
        # Box-average huge originals (up to 3216x2136) first: fast, and it smooths noise before thresholding.
        factor = min(image.size) // (4 * size)
        if factor > 1:
            image = image.reduce(factor)
        image = crop_fundus(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(image)


def _decode_images(paths: Sequence[Path], size: int, fundus: bool = False) -> Tensor:
    """Decode files in parallel threads (PIL releases the GIL while decoding). Returns uint8 (N, 3, size, size)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        out[i] = _read_image(paths[i], size, fundus)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _resize_uint8(images: Tensor, size: int, chunk: int = 2048) -> Tensor:
    """Resize uint8 (N, 3, h, w) to (N, 3, size, size): bilinear, antialiased, in chunks to bound memory."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk].float()
        resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def _image_files(folder: Path) -> list[Path]:
    """Sorted JPEG/PNG files directly in ``folder`` (hidden files skipped)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------------

def load_digits(split: str = "train", size: int = 32) -> ImageDataset:
    """scikit-learn's bundled handwritten digits (1,797 8x8 gray images, classes "0".."9"), no download needed.

    Gray levels 0..16 are scaled to 0..255, upsampled bilinearly to (size, size) and repeated to 3 channels.
    Splits: a stratified, seeded (seed 0) split into 1,347 train / 450 test images (25 %, like scikit-learn's
    ``train_test_split(test_size=0.25)``). Returns uint8 (N, 3, size, size).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    gray = torch.from_numpy(digits.images).float().mul(255 / 16).unsqueeze(1)  # (1797, 1, 8, 8)
    gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8)
    images = gray.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target).long()
    train_idx, test_idx = stratified_split(labels, 0.25, seed=0)
    index = train_idx if split == "train" else test_idx
    return ImageDataset(images[index].contiguous(), labels[index], [str(d) for d in range(10)], "digits", split)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (original python-batch archives)
# ----------------------------------------------------------------------------------------------------------------

def _read_pickle(name: str, folder: Path, path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as error:
        raise _format_error(name, folder, f"cannot unpickle {path} ({error}); the file is damaged or not a "
                            "CIFAR batch") from error
    if not isinstance(content, dict):
        raise _format_error(name, folder, f"{path} holds a {type(content).__name__}, expected a dict (a CIFAR batch)")
    return content


def _cifar_missing(name: str, folder: Path) -> list[str]:
    spec = CIFAR[name]
    needed = [spec["meta"], *spec["files"]["train"], *spec["files"]["test"]]
    return [f for f in needed if not (folder / f).is_file()]


def _download_cifar(name: str, folder: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    spec = CIFAR[name]
    # The md5 checked is the archive's: the only file we download. Extracted subsets are never checksummed.
    download_and_extract_archive(spec["url"], download_root=str(folder.parent), filename=Path(spec["url"]).name,
                                 md5=spec["md5"])


def load_cifar(name: str, root=None, split: str = "train", size: int = 32, download: bool = False) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the original python batches, read directly with pickle.

    Reads ``cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta`` or ``cifar-100-python/train, test,
    meta``. No checksum of the extracted files is verified, so subsets load as well as the full 50,000/10,000.
    download=True fetches and extracts the official archive (md5-checked) when files are missing.
    Images are (N, 3, size, size) uint8; other sizes than 32 are resized (bilinear) once and cached.
    """
    spec = CIFAR[name]
    folder = _dataset_dir(name, root)
    if _cifar_missing(name, folder) and download:
        _download_cifar(name, folder)
    if not folder.is_dir():
        raise _not_found(name, folder, f"no folder {folder}")
    missing = _cifar_missing(name, folder)
    if missing:
        raise _format_error(name, folder, f"{folder} lacks {', '.join(missing)}")
    files = [folder / f for f in spec["files"][split]]
    meta = _read_pickle(name, folder, folder / spec["meta"])
    if spec["names_key"] not in meta:
        raise _format_error(name, folder, f"{folder / spec['meta']} has no '{spec['names_key']}' entry")
    classes = [str(c) for c in meta[spec["names_key"]]]

    def build() -> dict[str, Tensor]:
        datas, labels = [], []
        for path in files:
            batch = _read_pickle(name, folder, path)
            if "data" not in batch or spec["labels_key"] not in batch:
                raise _format_error(name, folder, f"{path} lacks the 'data' or '{spec['labels_key']}' entry")
            data, batch_labels = np.asarray(batch["data"]), list(batch[spec["labels_key"]])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch_labels):
                raise _format_error(name, folder, f"{path}: 'data' is {data.dtype} {data.shape} with "
                                    f"{len(batch_labels)} labels, expected uint8 (N, 3072) with N labels")
            datas.append(data)
            labels.extend(batch_labels)
        labels_t = torch.tensor(labels, dtype=torch.long)
        num_classes = len(classes)
        if len(labels_t) and (int(labels_t.min()) < 0 or int(labels_t.max()) >= num_classes):
            raise _format_error(name, folder, f"labels range over {int(labels_t.min())}..{int(labels_t.max())}, "
                                f"expected 0..{num_classes - 1}")
        images = torch.from_numpy(np.concatenate(datas).reshape(-1, 3, 32, 32))  # R, G, B planes, row-major
        return {"images": _resize_uint8(images, size).contiguous(), "labels": labels_t}

    tensors = build() if size == 32 else _cached(name, split, size, folder, files, build)
    return ImageDataset(tensors["images"], tensors["labels"], classes, name, split)


# ----------------------------------------------------------------------------------------------------------------
# Intel Image Classification
# ----------------------------------------------------------------------------------------------------------------

def _intel_split_dir(folder: Path, split: str) -> Path:
    """seg_<split>/seg_<split> (Kaggle's double nesting) or seg_<split> (single nesting)."""
    outer = folder / f"seg_{split}"
    if not folder.is_dir():
        raise _not_found("intel_image", folder, f"no folder {folder}")
    if not outer.is_dir():
        if split == "pred":
            raise _not_found("intel_image", folder, f"no {outer}: the unlabelled 'pred' split (seg_pred) is not in "
                             "this copy; use split='train' or 'test'")
        nested = sorted(str(p.parent) for p in folder.glob(f"*/seg_{split}"))
        hint = f" (found one in {nested[0]}: pass root={nested[0]!r} or move its content up)" if nested else ""
        raise _format_error("intel_image", folder, f"no {outer}{hint}")
    inner = outer / f"seg_{split}"
    return inner if inner.is_dir() else outer


def _intel_files(folder: Path, split: str) -> tuple[list[Path], list[int]]:
    split_dir = _intel_split_dir(folder, split)
    if split == "pred":
        paths = _image_files(split_dir)
        if not paths:
            raise _format_error("intel_image", folder, f"{split_dir} holds no .jpg images")
        return paths, [-1] * len(paths)
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if found != INTEL_CLASSES:
        raise _format_error("intel_image", folder, f"{split_dir} has the class folders {found}, expected exactly "
                            f"{INTEL_CLASSES}")
    paths, labels = [], []
    for label, name in enumerate(INTEL_CLASSES):
        class_paths = _image_files(split_dir / name)
        if not class_paths:
            raise _format_error("intel_image", folder, f"class folder {split_dir / name} holds no .jpg images")
        paths += class_paths
        labels += [label] * len(class_paths)
    return paths, labels


def load_intel_image(root=None, split: str = "train", size: int = 64) -> ImageDataset:
    """Intel Image Classification (Kaggle puneet6060): natural scenes in 6 classes, 150x150 JPEGs.

    Layout: ``seg_train/seg_train/<class>/*.jpg``, ``seg_test/seg_test/<class>/*.jpg`` (single nesting
    ``seg_train/<class>`` works too), ``seg_pred/seg_pred/*.jpg`` for the unlabelled split "pred" (labels -1).
    Classes: buildings, forest, glacier, mountain, sea, street (folder name order). A few originals are smaller
    than 150x150; every image is resized (bilinear, antialiased) to (size, size), without keeping the aspect.
    Returns uint8 (N, 3, size, size), decoded once and cached.
    """
    folder = _dataset_dir("intel_image", root)
    paths, labels = _intel_files(folder, split)

    def build() -> dict[str, Tensor]:
        return {"images": _decode_images(paths, size), "labels": torch.tensor(labels, dtype=torch.long)}

    tensors = _cached("intel_image", split, size, folder, paths, build)
    return ImageDataset(tensors["images"], tensors["labels"], list(INTEL_CLASSES), "intel_image", split)


# ----------------------------------------------------------------------------------------------------------------
# APTOS 2019 Blindness Detection
# ----------------------------------------------------------------------------------------------------------------

def _read_aptos_csv(folder: Path) -> tuple[list[str], list[int]]:
    csv_path = folder / "train.csv"
    if not csv_path.is_file():
        raise _format_error("aptos2019", folder, f"no {csv_path}")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if not {"id_code", "diagnosis"} <= set(columns):
            raise _format_error("aptos2019", folder,
                                f"{csv_path} has the columns {columns}, expected id_code and diagnosis")
        ids, labels = [], []
        for line, row in enumerate(reader, start=2):
            value = (row["diagnosis"] or "").strip()
            if not value.lstrip("-").isdigit() or not 0 <= int(value) < len(APTOS_CLASSES):
                raise _format_error("aptos2019", folder, f"{csv_path} line {line}: diagnosis {value!r} for "
                                    f"{row['id_code']!r}, expected an integer grade 0..{len(APTOS_CLASSES) - 1}")
            ids.append(row["id_code"].strip())
            labels.append(int(value))
    if not ids:
        raise _format_error("aptos2019", folder, f"{csv_path} has no rows")
    return ids, labels


def aptos_split_indices(labels: Tensor, split: str) -> Tensor:
    """Indices of our fixed APTOS split: stratified 70 / 10 / 20 % train / val / test of train.csv, seed 0.

    labels: (N,) grades in train.csv order. Test takes ceil(20 % of N); val takes ceil(12.5 %) of the rest
    (10 % of N); train keeps the remainder. "all" is every row. Returns sorted int64 indices.
    """
    if split == "all":
        return torch.arange(len(labels))
    seed = APTOS_SPLIT["seed"]
    rest, test = stratified_split(labels, APTOS_SPLIT["test"], seed)
    train, val = stratified_split(labels[rest], APTOS_SPLIT["val"] / (1 - APTOS_SPLIT["test"]), seed)
    return {"train": rest[train], "val": rest[val], "test": test}[split]


def load_aptos2019(root=None, split: str = "train", size: int = 64) -> ImageDataset:
    """APTOS 2019 Blindness Detection: fundus photos graded 0..4 (No DR, Mild, Moderate, Severe, Proliferative DR).

    Reads ``train.csv`` (id_code, diagnosis) and ``train_images/<id_code>.png``. The competition's test labels were
    never published, so we split train.csv ourselves: stratified by grade, seed 0, 70 % "train", 10 % "val",
    20 % "test" (``aptos_split_indices``); "all" is every row in CSV order.
    Preprocessing as in the field (Ben Graham): crop the black border around the fundus (grayscale > 7/255,
    bounding box), then resize (bilinear) to (size, size). The local-average colour subtraction is not applied.
    Returns uint8 (N, 3, size, size); decoding (slow for the 3216x2136 originals) runs once and is cached.
    """
    folder = _dataset_dir("aptos2019", root)
    if not folder.is_dir():
        raise _not_found("aptos2019", folder, f"no folder {folder}")
    ids, labels = _read_aptos_csv(folder)
    image_dir = folder / "train_images"
    if not image_dir.is_dir():
        raise _format_error("aptos2019", folder, f"no folder {image_dir}")
    paths = [image_dir / f"{i}.png" for i in ids]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise _format_error("aptos2019", folder, f"{len(missing)} images listed in train.csv are missing from "
                            f"{image_dir}, e.g. {missing[:3]}")

    def build() -> dict[str, Tensor]:
        return {"images": _decode_images(paths, size, fundus=True), "labels": torch.tensor(labels, dtype=torch.long)}

    tensors = _cached("aptos2019", "all", size, folder, [folder / "train.csv", *paths], build)
    data = ImageDataset(tensors["images"], tensors["labels"], list(APTOS_CLASSES), "aptos2019", split)
    return data if split == "all" else data.subset(aptos_split_indices(data.labels, split))


# ----------------------------------------------------------------------------------------------------------------
# The one entry point
# ----------------------------------------------------------------------------------------------------------------

def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def load(name: str, root: str | os.PathLike | None = None, split: str = "train", size: int | None = None,
         download: bool = False) -> ImageDataset:
    """Load a whole split of a dataset as an :class:`ImageDataset` (uint8 (N, 3, size, size), int64 labels).

    name: one of ``DATASETS``. root: the folder holding the dataset folders (``$DATA_ROOT`` when None) or the
    dataset folder itself. split: one of ``SPLITS[name]``. size: image side in pixels, ``DEFAULT_SIZE[name]``
    when None. download: fetch CIFAR archives when missing (the Kaggle datasets need a login: download them by
    hand, the error message says where). Raises DatasetNotFoundError / DatasetFormatError with the fix.
    """
    _check_name(name)
    if split not in SPLITS[name]:
        raise ValueError(f"unknown split {split!r} for {name}; allowed: {', '.join(SPLITS[name])}")
    size = DEFAULT_SIZE[name] if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (image side in pixels) or None, got {size!r}")
    if name == "digits":
        return load_digits(split, size)
    if name in CIFAR:
        return load_cifar(name, root, split, size, download)
    if name == "intel_image":
        return load_intel_image(root, split, size)
    return load_aptos2019(root, split, size)
