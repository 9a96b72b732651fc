"""Dataset loaders on the real subsets (shared/data), the disk cache, and the errors on broken copies.

shared/data is read-only: every test points SSLTUTOR_CACHE at a tmp folder, and tests that need a writable data
folder (or a broken one) work on small copies in tmp_path.
"""
import hashlib
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssltutor import data
from ssltutor.data import (
    APTOS_CLASSES,
    INTEL_CLASSES,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    load,
)
from ssltutor.data.sources import aptos_split_indices

SIZE = 32  # small images keep the tests fast


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Fallback cache in tmp (shared/data is read-only) and no DATA_ROOT leaking in from the environment."""
    folder = tmp_path / "user_cache"
    monkeypatch.setenv("SSLTUTOR_CACHE", str(folder))
    monkeypatch.delenv("DATA_ROOT", raising=False)
    return folder


def png(path) -> torch.Tensor:
    """uint8 (3, H, W) pixels of an image file."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def png_like(image: Image.Image) -> torch.Tensor:
    """float (3, H, W) pixels of a PIL image."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float()


def writable_copy(src: Path, dest: Path) -> Path:
    """Copy a folder of shared/data (read-only bits included) as a writable folder, the way a user's data would be."""
    shutil.copytree(src, dest, copy_function=shutil.copyfile)
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    return dest


def small_intel(shared_data: Path, dest: Path, per_class: int = 2, nesting: int = 2) -> Path:
    """Copy ``per_class`` images per class of both splits into dest, with Kaggle's double or a single nesting."""
    for split in ("train", "test"):
        src = shared_data / "intel_image" / f"seg_{split}" / f"seg_{split}"
        out = dest / f"seg_{split}" / (f"seg_{split}" if nesting == 2 else "")
        for name in INTEL_CLASSES:
            (out / name).mkdir(parents=True)
            for path in sorted((src / name).iterdir())[:per_class]:
                shutil.copyfile(path, out / name / path.name)
    return dest


def small_aptos(shared_data: Path, dest: Path, rows: int = 10) -> Path:
    """Copy the first ``rows`` rows of aptos2019 (224 px images) and their images into dest."""
    src = shared_data / "aptos2019"
    lines = (src / "train.csv").read_text().splitlines()[: rows + 1]
    (dest / "train_images").mkdir(parents=True)
    (dest / "train.csv").write_text("\n".join(lines) + "\n")
    for line in lines[1:]:
        name = line.split(",")[0] + ".png"
        shutil.copyfile(src / "train_images" / name, dest / "train_images" / name)
    return dest


def listing(folder: Path) -> list[tuple]:
    """Every file and folder under ``folder`` with size, mtime and mode: any write shows up here."""
    out = []
    for path in sorted(folder.rglob("*")) + [folder]:
        info = path.lstat()
        out.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns, info.st_mode))
    return out


# ------------------------------------------------------------------------------------------------ entry point

def test_unknown_name_split_and_size_list_what_is_allowed():
    with pytest.raises(ValueError, match="allowed: digits, cifar10, cifar100, intel_image, aptos2019"):
        load("imagenet")
    with pytest.raises(ValueError, match="allowed: train, val, test, all"):
        load("aptos2019", split="validation")
    with pytest.raises(ValueError, match="allowed: train, test, pred"):
        load("intel_image", split="val")
    with pytest.raises(ValueError, match="size"):
        load("digits", size=0)
    assert data.DATASETS == ("digits", "cifar10", "cifar100", "intel_image", "aptos2019")
    assert data.DEFAULT_SIZE["intel_image"] == data.DEFAULT_SIZE["aptos2019"] == 64
    assert data.DEFAULT_SIZE["cifar10"] == data.DEFAULT_SIZE["digits"] == 32


def test_error_classes():
    assert issubclass(DatasetNotFoundError, DatasetError) and issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(DatasetFormatError, DatasetError) and issubclass(DatasetFormatError, ValueError)


def test_root_resolution(shared_data, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(shared_data))
    assert data.default_root("intel_image") == shared_data / "intel_image"
    assert data.default_root("cifar10") == shared_data / "cifar-10-batches-py"
    assert data.default_root() == shared_data
    by_env = load("cifar10", split="test")
    direct = load("cifar10", root=shared_data / "cifar-10-batches-py", split="test")
    parent = load("cifar10", root=shared_data, split="test")
    assert torch.equal(by_env.images, direct.images) and torch.equal(direct.images, parent.images)
    assert len(load("aptos2019", root=shared_data / "aptos2019", split="val", size=SIZE)) == 40


# ------------------------------------------------------------------------------------------------ each dataset

def test_digits():
    train, test = load("digits"), load("digits", split="test")
    assert train.images.shape == (1347, 3, 32, 32) and test.images.shape == (450, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # gray repeated to RGB
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert train.classes == [str(d) for d in range(10)]
    from sklearn.datasets import load_digits

    totals = torch.bincount(torch.from_numpy(load_digits().target))
    counts = torch.bincount(train.labels) + torch.bincount(test.labels)
    assert torch.equal(counts, totals)
    assert ((torch.bincount(test.labels) - totals * 0.25).abs() <= 1).all()  # stratified
    assert torch.equal(load("digits", split="test").images, test.images)  # seeded
    assert load("digits", size=16).images.shape[-1] == 16


def test_cifar10_subset_matches_pngs(shared_data):
    train, test = load("cifar10", root=shared_data), load("cifar10", root=shared_data, split="test")
    assert train.images.shape == (3000, 3, 32, 32) and test.images.shape == (1000, 3, 32, 32)
    assert train.images.is_contiguous() and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [300] * 10 and torch.bincount(test.labels).tolist() == [100] * 10
    assert train.classes[:3] == ["airplane", "automobile", "bird"] and len(train.classes) == 10
    # Batches are concatenated in order: data_batch_k row i is sample 600 * (k - 1) + i.
    for batch, offset, split, dataset in [("data_batch_1", 0, "train", train), ("data_batch_5", 2400, "train", train),
                                          ("test_batch", 0, "test", test)]:
        with open(shared_data / "cifar-10-batches-py" / batch, "rb") as f:
            names = pickle.load(f, encoding="latin1")["filenames"]
        for i in (0, 1, len(names) - 1):
            index = offset + i
            label = int(dataset.labels[index])
            expected = png(shared_data / "cifar10_png" / split / dataset.classes[label] / names[i])
            assert torch.equal(dataset.images[index], expected), (batch, names[i])


def test_cifar100_subset_fine_labels(shared_data):
    train, test = load("cifar100", root=shared_data), load("cifar100", root=shared_data, split="test")
    assert len(train) == 2000 and len(test) == 500 and len(train.classes) == 100
    assert torch.bincount(train.labels).tolist() == [20] * 100
    with open(shared_data / "cifar-100-python" / "test", "rb") as f:
        names = pickle.load(f, encoding="latin1")["filenames"]
    for i in (0, 250, 499):
        expected = png(shared_data / "cifar100_png" / "test" / test.classes[int(test.labels[i])] / names[i])
        assert torch.equal(test.images[i], expected)


def test_cifar_resize_is_cached_outside_the_read_only_folder(shared_data, cache_dir):
    small = load("cifar10", root=shared_data, split="test", size=16)
    assert small.images.shape == (1000, 3, 16, 16)
    assert len(list(cache_dir.glob("cifar10-test-16px-*.pt"))) == 1
    assert not (shared_data / "cifar-10-batches-py" / ".ssltutor_cache").exists()
    assert torch.equal(load("cifar10", root=shared_data, split="test", size=16).images, small.images)


def test_cifar_download_uses_official_archive_only_when_missing(shared_data, tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):  # no network in tests
        calls.append((url, md5, filename))
        shutil.copytree(shared_data / "cifar-10-batches-py", Path(download_root) / "cifar-10-batches-py")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert len(load("cifar10", root=tmp_path, split="test", download=True)) == 1000
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                      "cifar-10-python.tar.gz")]
    load("cifar10", root=tmp_path, split="test", download=True)  # present now: no second download
    assert len(calls) == 1


def test_intel_image_subset_and_small_images_resized(shared_data):
    train = load("intel_image", root=shared_data, size=SIZE)
    test = load("intel_image", root=shared_data, split="test", size=SIZE)
    assert train.images.shape == (1200, 3, SIZE, SIZE) and test.images.shape == (480, 3, SIZE, SIZE)
    assert train.classes == INTEL_CLASSES
    assert torch.bincount(train.labels).tolist() == [200] * 6 and torch.bincount(test.labels).tolist() == [80] * 6
    for split, dataset, cls, name, source_size in [("test", test, "glacier", "21657.jpg", (150, 76)),
                                                  ("train", train, "glacier", "7512.jpg", (150, 135)),
                                                  ("train", train, "forest", "5483.jpg", (150, 136))]:
        folder = shared_data / "intel_image" / f"seg_{split}" / f"seg_{split}"
        path = folder / cls / name
        assert Image.open(path).size == source_size
        # Files are read class by class, sorted by name: locate the image in the tensor.
        before = sum(len(list((folder / c).iterdir())) for c in INTEL_CLASSES[: INTEL_CLASSES.index(cls)])
        index = before + sorted(p.name for p in (folder / cls).iterdir()).index(name)
        assert int(dataset.labels[index]) == INTEL_CLASSES.index(cls)
        reference = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        diff = (dataset.images[index].float() - png_like(reference)).abs().mean()
        assert diff < 8, f"{name}: mean abs difference {diff:.1f} to a plain PIL resize (squashed, not padded)"


def test_intel_single_nesting_and_pred_split(shared_data, tmp_path):
    root = small_intel(shared_data, tmp_path / "intel_image", per_class=2, nesting=1)
    train = load("intel_image", root=tmp_path, size=SIZE)  # root = the folder holding intel_image/
    assert len(train) == 12 and train.labels.tolist() == [c for c in range(6) for _ in range(2)]
    with pytest.raises(DatasetNotFoundError, match="seg_pred"):
        load("intel_image", root=root, split="pred", size=SIZE)
    pred_dir = root / "seg_pred" / "seg_pred"
    pred_dir.mkdir(parents=True)
    for path in sorted((root / "seg_test" / "forest").iterdir()):
        shutil.copyfile(path, pred_dir / path.name)
    pred = load("intel_image", root=root, split="pred", size=SIZE)
    assert len(pred) == 2 and pred.labels.tolist() == [-1, -1] and pred.classes == INTEL_CLASSES


def test_aptos2019_fixed_stratified_split(shared_data):
    parts = {s: load("aptos2019", root=shared_data, split=s, size=SIZE) for s in ("train", "val", "test", "all")}
    assert [len(parts[s]) for s in ("train", "val", "test", "all")] == [280, 40, 80, 400]
    assert parts["all"].classes == APTOS_CLASSES
    for split, per_grade in [("train", 56), ("val", 8), ("test", 16)]:
        assert torch.bincount(parts[split].labels).tolist() == [per_grade] * 5
    index = {s: aptos_split_indices(parts["all"].labels, s) for s in ("train", "val", "test")}
    assert torch.equal(torch.cat(list(index.values())).sort().values, torch.arange(400))
    assert torch.equal(parts["all"].images[index["val"]], parts["val"].images)
    rows = (shared_data / "aptos2019" / "train.csv").read_text().splitlines()[1:]
    assert parts["all"].labels.tolist() == [int(r.split(",")[1]) for r in rows]


def test_aptos2019_raw_border_crop_fills_frame_and_local_cache(shared_data, tmp_path, cache_dir):
    root = writable_copy(shared_data / "aptos2019_raw", tmp_path / "aptos2019")
    start = time.perf_counter()
    raw = load("aptos2019", root=tmp_path, split="all", size=SIZE)
    first = time.perf_counter() - start
    assert raw.images.shape == (15, 3, SIZE, SIZE) and raw.labels.tolist().count(4) == 3
    gray = raw.images.float().mean(1)  # (15, S, S)
    bright = gray > 20
    # The fundus touches all four sides after the crop (a plain resize leaves black bands left and right).
    for axis in (1, 2):
        assert bright.any(axis).float().mean(1).min() > 0.9
    middle = gray[:, SIZE // 2]
    assert (middle[:, 0] > 20).all() and (middle[:, -1] > 20).all()
    plain = png_like(Image.open(root / "train_images" / "e7d2c2c3b30f.png").convert("RGB").resize((SIZE, SIZE)))
    assert plain.mean(0)[SIZE // 2, 0] < 10  # the uncropped 2416x1736 original has a black left band
    # Writable data folder: the cache lives next to the data, not in the user cache.
    local = list((root / ".ssltutor_cache").glob("aptos2019-all-32px-*.pt"))
    assert len(local) == 1 and not cache_dir.exists()
    start = time.perf_counter()
    again = load("aptos2019", root=root, split="all", size=SIZE)
    second = time.perf_counter() - start
    assert torch.equal(again.images, raw.images) and torch.equal(again.labels, raw.labels)
    assert second < 0.5 and second < first / 5, (first, second)


def test_cache_of_read_only_folder_goes_to_user_cache(shared_data, cache_dir):
    start = time.perf_counter()
    first = load("intel_image", root=shared_data, split="test", size=SIZE)
    cold = time.perf_counter() - start
    assert [p.name.startswith("intel_image-test-32px-") for p in cache_dir.iterdir()] == [True]
    start = time.perf_counter()
    second = load("intel_image", root=shared_data, split="test", size=SIZE)
    warm = time.perf_counter() - start
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert warm < 0.5 and warm < cold / 3, (cold, warm)
    assert not (shared_data / "intel_image" / ".ssltutor_cache").exists()


def test_read_only_permission_bits_are_honoured(shared_data, tmp_path, cache_dir):
    root = small_intel(shared_data, tmp_path / "intel_image", per_class=1)
    root.chmod(0o555)  # even root (who may write anyway) must not write into a folder marked read-only
    try:
        load("intel_image", root=root, size=SIZE)
        assert not (root / ".ssltutor_cache").exists() and len(list(cache_dir.glob("*.pt"))) == 1
    finally:
        root.chmod(0o755)


def test_cache_is_invalidated_by_changed_files_and_survives_corruption(shared_data, tmp_path):
    root = small_intel(shared_data, tmp_path / "intel_image", per_class=1)
    before = load("intel_image", root=root, size=SIZE)
    target = root / "seg_train" / "seg_train" / "buildings"
    victim = next(target.iterdir())
    shutil.copyfile(next((root / "seg_train" / "seg_train" / "sea").iterdir()), victim)  # new bytes, same name
    after = load("intel_image", root=root, size=SIZE)
    assert torch.equal(after.images[0], after.images[4]) and not torch.equal(after.images[0], before.images[0])
    caches = list((root / ".ssltutor_cache").glob("intel_image-train-32px-*.pt"))
    assert len(caches) == 1  # the stale file was replaced
    caches[0].write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="cache"):
        rebuilt = load("intel_image", root=root, size=SIZE)
    assert torch.equal(rebuilt.images, after.images)


def test_loading_never_modifies_the_data_folder(shared_data):
    before = listing(shared_data)
    for name, split in [("intel_image", "train"), ("aptos2019", "test"), ("cifar10", "train"), ("cifar100", "test")]:
        load(name, root=shared_data, split=split, size=16)
    load("aptos2019", root=shared_data / "aptos2019_raw", split="all", size=16)
    assert listing(shared_data) == before
    assert hashlib.sha256((shared_data / "aptos2019" / "train.csv").read_bytes()).hexdigest() == next(
        line.split()[0] for line in (shared_data / "SHA256SUMS").read_text().splitlines()
        if line.endswith("aptos2019/train.csv")
    )


# ------------------------------------------------------------------------------------------------ broken copies

@pytest.mark.parametrize("name, hint", [
    ("intel_image", "https://www.kaggle.com/datasets/puneet6060/intel-image-classification"),
    ("aptos2019", "https://www.kaggle.com/c/aptos2019-blindness-detection"),
    ("cifar10", "download=True"),
    ("cifar100", "https://www.cs.toronto.edu/~kriz/cifar.html"),
])
def test_missing_folder_says_where_and_how_to_get_it(tmp_path, name, hint):
    with pytest.raises(DatasetNotFoundError) as info:
        load(name, root=tmp_path / "nowhere")
    message = str(info.value)
    assert hint in message and str(tmp_path / "nowhere") in message and "DATA_ROOT" in message


def test_intel_wrong_layouts(shared_data, tmp_path):
    flat = tmp_path / "flat" / "intel_image" / "seg_train" / "seg_train"
    flat.mkdir(parents=True)
    shutil.copyfile(next((shared_data / "intel_image" / "seg_train" / "seg_train" / "sea").iterdir()), flat / "1.jpg")
    with pytest.raises(DatasetFormatError, match="class folders") as info:
        load("intel_image", root=tmp_path / "flat", size=SIZE)
    assert "buildings" in str(info.value) and "seg_train/seg_train/<class>/*.jpg" in str(info.value)
    nested = small_intel(shared_data, tmp_path / "nested" / "intel_image" / "archive", per_class=1)
    with pytest.raises(DatasetFormatError, match="archive"):
        load("intel_image", root=nested.parent, size=SIZE)
    empty = small_intel(shared_data, tmp_path / "empty" / "intel_image", per_class=1)
    for path in (empty / "seg_test" / "seg_test" / "street").iterdir():
        path.unlink()
    with pytest.raises(DatasetFormatError, match="street holds no"):
        load("intel_image", root=empty, split="test", size=SIZE)


def test_truncated_jpeg_names_the_file(shared_data, tmp_path):
    root = small_intel(shared_data, tmp_path / "intel_image", per_class=1)
    victim = next((root / "seg_train" / "seg_train" / "mountain").iterdir())
    victim.write_bytes(victim.read_bytes()[:900])
    with pytest.raises(DatasetFormatError, match="cannot decode image") as info:
        load("intel_image", root=root, size=SIZE)
    assert str(victim) in str(info.value)
    victim.write_bytes(b"this is not an image")
    with pytest.raises(DatasetFormatError, match=victim.name):
        load("intel_image", root=root, size=SIZE)


def test_aptos_broken_csv_and_images(shared_data, tmp_path):
    root = small_aptos(shared_data, tmp_path / "aptos2019")
    csv_path, good = root / "train.csv", (root / "train.csv").read_text()
    csv_path.write_text(good.replace("id_code,diagnosis", "image,level"))
    with pytest.raises(DatasetFormatError, match="expected id_code and diagnosis"):
        load("aptos2019", root=root, size=SIZE)
    lines = good.splitlines()
    lines[3] = lines[3].split(",")[0] + ",7"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"line 4: diagnosis '7'.*0\.\.4"):
        load("aptos2019", root=root, size=SIZE)
    csv_path.write_text(good + "ffffffffffff,2\n")
    with pytest.raises(DatasetFormatError, match="ffffffffffff.png"):
        load("aptos2019", root=root, size=SIZE)
    csv_path.write_text(good)
    victim = root / "train_images" / (lines[2].split(",")[0] + ".png")
    victim.write_bytes(victim.read_bytes()[:2000])
    with pytest.raises(DatasetFormatError, match="cannot decode image"):
        load("aptos2019", root=root, size=SIZE)
    shutil.rmtree(root / "train_images")
    with pytest.raises(DatasetFormatError, match="train_images"):
        load("aptos2019", root=root, size=SIZE)


def test_cifar_broken_batches(shared_data, tmp_path):
    folder = writable_copy(shared_data / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load("cifar10", root=tmp_path)
    shutil.copyfile(shared_data / "cifar-10-batches-py" / "data_batch_3", folder / "data_batch_3")
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:5000])
    with pytest.raises(DatasetFormatError, match="cannot unpickle"):
        load("cifar10", root=tmp_path, split="test")
    with open(shared_data / "cifar-10-batches-py" / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["labels"][5] = 10
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(DatasetFormatError, match=r"expected 0\.\.9"):
        load("cifar10", root=tmp_path, split="test")
