"""The GPU check's CPU-testable parts: its data writer and reader, its command line, the refusal without CUDA, and a
dry run of every section on CPU at toy size (the wiring, not the numbers)."""
import json

import numpy as np
import pytest
import torch

from ssltutor import bench, gpucheck


@pytest.fixture(scope="module")
def gpu_data(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_data")
    gpucheck.write_cifar_subset(folder, shared_data / "cifar10_20k", count=200, seed=0)
    return folder


def test_writer_takes_equal_classes_as_uint8(gpu_data, shared_data, tmp_path):
    images, labels = np.load(gpu_data / gpucheck.IMAGES_FILE), np.load(gpu_data / gpucheck.LABELS_FILE)
    assert images.dtype == np.uint8 and images.shape == (200, 3, 32, 32)
    assert labels.dtype == np.uint8 and np.bincount(labels, minlength=10).tolist() == [20] * 10
    data = gpucheck.read_cifar_subset(gpu_data)
    assert data.name == "cifar10" and data.classes[0] == "airplane" and data.labels.dtype == torch.int64
    torch.testing.assert_close(data.images, torch.from_numpy(images))
    # the same seed draws the same images; 10,000 images are ~31 MB, within what travels beside the repository
    again = gpucheck.write_cifar_subset(tmp_path / "again", shared_data / "cifar10_20k", count=200, seed=0)
    assert np.array_equal(np.load(again[0]), images)
    assert 10_000 * 3 * 32 * 32 + 10_000 < 40 * 2**20
    for count in (0, 15, 30_000):
        with pytest.raises(ValueError, match="count"):
            gpucheck.write_cifar_subset(tmp_path / "bad", shared_data / "cifar10_20k", count=count)


def test_reader_says_how_to_write_the_data(tmp_path):
    with pytest.raises(gpucheck.CheckError, match="--write-data"):
        gpucheck.read_cifar_subset(tmp_path)
    np.save(tmp_path / gpucheck.IMAGES_FILE, np.zeros((4, 3, 16, 16), dtype=np.uint8))
    np.save(tmp_path / gpucheck.LABELS_FILE, np.zeros(4, dtype=np.uint8))
    with pytest.raises(gpucheck.CheckError, match=r"uint8 \(N, 3, 32, 32\)"):
        gpucheck.read_cifar_subset(tmp_path)


def test_command_line_defaults_and_write_data(shared_data, tmp_path, capsys):
    args = bench.build_parser().parse_args(["gpu"])
    assert (args.data, args.write_data, args.count, args.batch_size) == ("gpu_data", None, 10_000, 256)
    assert args.sections == "paths,throughput,epoch,colab"
    bench.main(["gpu", "--write-data", str(tmp_path / "d"), "--source", str(shared_data / "cifar10_20k"),
                "--count", "50"])  # needs no GPU
    assert "wrote" in capsys.readouterr().out
    assert np.load(tmp_path / "d" / gpucheck.LABELS_FILE).shape == (50,)
    with pytest.raises(SystemExit):
        bench.main(["gpu", "--count", "many"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_the_check_refuses_without_cuda(gpu_data):
    with pytest.raises(SystemExit, match="needs a CUDA GPU.*--write-data"):
        bench.main(["gpu", "--data", str(gpu_data)])
    with pytest.raises(gpucheck.CheckError, match="needs a CUDA GPU"):
        gpucheck.run_check(gpu_data, device="cuda")
    with pytest.raises(ValueError, match="unknown section"):
        gpucheck.run_check(gpu_data, sections=("paths", "speed"), device="cpu")


def test_dry_run_of_every_section_on_cpu(gpu_data, tmp_path):
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = gpucheck.run_check(gpu_data, device="cpu", sizes=gpucheck.Sizes.toy(), output=tmp_path / "r.json")
    finally:
        torch.set_num_threads(saved)
    assert record["failed"] == []
    rows = {(r["section"], r["name"]): r for r in record["rows"]}
    assert rows[("code paths", "fp16 + grad scaler")]["status"] == "SKIP"  # CUDA only
    assert rows[("code paths", "bf16 + channels_last")]["status"] == "PASS"
    names = [name for section, name in rows if section == "throughput"]
    assert len(names) == len(gpucheck.throughput_methods(gpucheck.Sizes.toy())) >= 20
    assert {"supervised", "swav multi-crop", "fkt", "dogo (resnet18 + resnet50)",
            "cassle(simclr), distilling"} <= set(names)
    colab = [r for r in record["rows"] if r["section"] == "colab"]
    assert len(colab) == len(gpucheck.NOTEBOOK_COST) and all(r["values"]["notebook_projected_min"] > 0 for r in colab)
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["section"] == "code paths"
