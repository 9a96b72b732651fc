"""Data-parallel training: two CPU processes (gloo) with half the batch each train exactly like one process with the
whole batch; bad launches stop before training; ``ssltutor batch --gpus`` gives each worker its own device.

The equivalence runs use SyncBatchNorm (``sync_batchnorm=True``): the backbone and the BYOL/Barlow heads have
BatchNorm, whose batch statistics over B/2 images differ from those over B. Views are deterministic (the image and
its mirror), since ranks draw their own augmentations. Networks run in float64, so that the comparison measures the
method, not rounding: every parameter and buffer after two SGD steps agrees within 1e-9 of the size of its update,
the logged losses (float32) within 1e-6 relative, and the two ranks agree bitwise. (In float32 the same runs differ by summation
order only: up to ~1.5e-5 of the update for Barlow Twins, ~1e-6 for SimCLR and BYOL.)
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from ssltutor import cli, distributed
from ssltutor.distributed import DistributedError, gather_with_grad, init_distributed, launch_context
from ssltutor.methods import create
from ssltutor.models import create_backbone
from ssltutor.train import fit

METHODS = ("simclr", "byol", "barlow_twins")
BATCH, IMAGES, SIZE = 8, 16, 16  # two steps of one epoch
RTOL = 1e-9
LOSS_RTOL = 1e-6  # the history stores losses as float32
FIT = dict(epochs=1, batch_size=BATCH, optimizer="sgd", lr=0.1, weight_decay=5e-4, seed=0, progress=False,
           device="cpu")


def mirrored_views(images: torch.Tensor, generator=None) -> list[torch.Tensor]:
    """Two deterministic views, the image and its mirror: ranks and the single process see the same inputs."""
    x = images.double() / 255
    return [x, x.flip(3)]


def _data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IMAGES, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    return images, torch.zeros(IMAGES, dtype=torch.long)


def _method(name: str):
    torch.manual_seed(0)
    return create(name, create_backbone("small_convnet", width=4), head_scale=1 / 32, image_size=SIZE,
                  views=mirrored_views).double()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_environment(monkeypatch, rank=0, world=2, port=29500):
    for key, value in dict(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world, MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=port).items():
        monkeypatch.setenv(key, str(value))


def _worker(rank: int, port: int, folder: str) -> None:
    """One rank, launched the way torchrun does it (environment variables), then fit(distributed=None)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    folder = Path(folder)
    images, labels = _data()
    for name in METHODS:
        method = _method(name)
        history = fit(method, (images, labels), sync_batchnorm=True, **FIT)
        torch.save({"state": method.state_dict(), "loss": history.steps["loss"].tolist()}, folder / f"{name}-{rank}.pt")

    # gather_with_grad: rows in rank order; backward = this rank's rows of the gradient summed over both ranks' losses
    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    y = gather_with_grad(x)
    weights = torch.arange(12.0).view(4, 3)
    (y * weights).sum().backward()
    assert y[:2].eq(1).all() and y[2:].eq(2).all()
    assert torch.equal(x.grad, 2 * weights[2 * rank : 2 * rank + 2])

    # resume across ranks: killed in epoch 2 (after rank 0 wrote the epoch-1 checkpoint), resumed by both ranks,
    # it ends with the weights of the uninterrupted run
    two_epochs = {**FIT, "epochs": 2}
    straight = _method("simclr")
    fit(straight, (images, labels), **two_epochs)
    killed, calls = _method("simclr"), []
    step = killed.step

    def dying_step(batch):
        calls.append(1)
        if len(calls) == 3:  # the first step of epoch 2, on both ranks
            raise KeyboardInterrupt
        return step(batch)

    killed.step = dying_step
    try:
        fit(killed, (images, labels), checkpoint_dir=folder / "ckpt", **two_epochs)
    except KeyboardInterrupt:
        pass
    resumed = _method("simclr")
    history = fit(resumed, (images, labels), checkpoint_dir=folder / "ckpt", resume=True, **two_epochs)
    assert list(history.epochs["epoch"]) == [1, 2]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=2, join=True)
    return folder


@pytest.mark.parametrize("name", METHODS)
def test_two_ranks_with_half_batches_match_one_process(two_ranks, name):
    images, labels = _data()
    method = _method(name)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    history = fit(method, (images, labels), distributed=False, **FIT)
    ranks = [torch.load(two_ranks / f"{name}-{r}.pt") for r in (0, 1)]

    assert ranks[0]["loss"] == pytest.approx(history.steps["loss"].tolist(), rel=LOSS_RTOL)
    for key, single in method.state_dict().items():
        rank0, rank1 = ranks[0]["state"][key], ranks[1]["state"][key]
        assert torch.equal(rank0, rank1), f"{key}: the ranks drifted apart"
        if not single.is_floating_point():
            assert torch.equal(rank0, single), key
            continue
        update = (single - before[key]).abs().max()
        assert (rank0 - single).abs().max() <= RTOL * update + 1e-12, f"{name} {key}: update differs"


def test_launch_errors_name_the_fix(monkeypatch):
    images, labels = _data()
    for key in distributed.RENDEZVOUS_VARIABLES + ("LOCAL_RANK",):
        monkeypatch.delenv(key, raising=False)
    assert launch_context(None, torch.device("cpu"), BATCH) is None  # not launched: the single-process path
    with pytest.raises(DistributedError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.*torchrun"):
        fit(_method("simclr"), (images, labels), distributed=True, **FIT)

    _launch_environment(monkeypatch, world=3, port=1)  # nothing listens there: the check must come first
    with pytest.raises(DistributedError, match="batch_size 8 is not divisible by the world size 3.*e.g. 6 or 9"):
        fit(_method("simclr"), (images, labels), **FIT)  # distributed=None: torchrun's variables switch it on
    _launch_environment(monkeypatch, world=2, port=1)
    with pytest.raises(DistributedError, match="drop_last=True"):
        fit(_method("simclr"), (images, labels), drop_last=False, **FIT)
    with pytest.raises(DistributedError, match="backend 'mpi' is not available .*available: gloo"):
        init_distributed("cpu", backend="mpi")
    with pytest.raises(DistributedError, match="'nccl' runs only on CUDA"):
        init_distributed("cpu", backend="nccl")
    monkeypatch.setattr(torch.distributed, "is_backend_available", lambda name: False)
    with pytest.raises(DistributedError, match="backend 'gloo' is not available in this PyTorch build"):
        fit(_method("simclr"), (images, labels), **FIT)
    assert not torch.distributed.is_initialized()


# ------------------------------------------------------------------------------------------- ssltutor batch --gpus
PROBE = '''import json, os, pathlib
if seed == 2:
    raise RuntimeError("deliberate failure")
record = {"notebook": "02_probe", "params": {"dataset": dataset, "preset": preset, "seed": seed, "device": device,
          "output_dir": output_dir},
          "results": {"probe": {"gpu": float(os.environ["CUDA_VISIBLE_DEVICES"]), "worker": float(os.getppid())}}}
pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)
pathlib.Path(output_dir, "metrics.json").write_text(json.dumps(record))'''


@pytest.fixture
def probe(tmp_path):
    """A notebook that records which GPU its kernel sees and which worker started it; seed 2 fails."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = 'dataset = "digits"\ndata_root = None\npreset = "cpu"\nseed = 0\ndevice = "auto"\noutput_dir = "out"'
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(PROBE)]
    path = tmp_path / "02_probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_batch_gives_each_worker_its_own_gpu(probe, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["batch", "--notebooks", str(probe), "--datasets", "digits", "--seeds", "0-2", "--preset", "smoke",
            "--output", str(out), "--gpus", "0,1"]
    assert cli.main(argv) == 1  # seed 2 fails, the other two finish
    captured = capsys.readouterr()
    assert "FAILED 02_probe/digits-smoke-seed2: cell 1: RuntimeError: deliberate failure" in captured.err
    rows = pd.read_csv(out / "results.csv").pivot(index="run", columns="metric", values="value")
    assert sorted(rows.index) == ["02_probe/digits-smoke-seed0", "02_probe/digits-smoke-seed1"]
    assert set(rows["gpu"]) <= {0, 1}
    assert rows.groupby("worker")["gpu"].nunique().eq(1).all()  # a worker keeps its one GPU
    assert json.loads((out / "02_probe" / "digits-smoke-seed2" / "run.json").read_text())["status"] == "failed"

    assert cli.main([*argv[:-2], "--gpus", "0,1", "--workers", "3"]) == 2
    assert "each worker needs a GPU of its own" in capsys.readouterr().err
    assert cli.main([*argv, "--device", "cuda:1"]) == 2
    assert "sees only its GPU, as cuda:0" in capsys.readouterr().err
