"""The fit loop: schedules, optimizers, precision, checkpoints and exact resume, errors."""
import math

import pandas as pd
import pytest
import torch

from ssltutor.data import load
from ssltutor.methods import create
from ssltutor.models import create_backbone
from ssltutor.train import LARS, NonFiniteLossError, fit, lr_at, make_optimizer


@pytest.fixture(scope="module")
def tiny():
    d = load("digits", split="train")
    return d.images[:192], d.labels[:192]


def _method(name="simclr"):
    torch.manual_seed(0)
    opts = dict(head_scale=1 / 32) if name != "supervised" else dict(num_classes=10)
    return create(name, create_backbone("small_convnet", width=8), **opts)


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 100, 10, 1.0, 0.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.01
    assert lr_at(50, 100, 0, 0.5, schedule="constant") == 0.5


def test_history_has_steps_and_epochs(tiny, tmp_path):
    seen = []
    h = fit(_method(), tiny, epochs=2, batch_size=64, seed=0, progress=False, checkpoint_dir=tmp_path,
            callbacks=[lambda s: seen.append(s.epoch) or {"probe": 0.5}])
    assert isinstance(h.steps, pd.DataFrame) and len(h.steps) == 6
    assert {"epoch", "step", "loss", "lr", "images_per_s"} <= set(h.steps.columns)
    assert list(h.epochs["epoch"]) == [1, 2] and list(h.epochs["probe"]) == [0.5, 0.5]
    assert seen == [1, 2]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "history_steps.csv").exists()
    assert len(pd.read_csv(tmp_path / "history_epochs.csv")) == 2


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adam", "adamw"])
def test_optimizers_reduce_supervised_loss(tiny, optimizer):
    h = fit(_method("supervised"), tiny, epochs=3, batch_size=64, optimizer=optimizer, seed=0, progress=False)
    assert h.epochs["loss"].iloc[-1] < h.epochs["loss"].iloc[0]


def test_bf16_and_channels_last_run_on_cpu(tiny):
    h = fit(_method(), tiny, epochs=1, batch_size=64, precision="bf16", channels_last=True, seed=0, progress=False)
    assert h.steps["loss"].map(math.isfinite).all()


def test_same_seed_same_weights(tiny):
    w = []
    for _ in range(2):
        m = _method()
        fit(m, tiny, epochs=1, batch_size=64, seed=3, progress=False)
        w.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(w[0], w[1])


class _Kill(Exception):
    pass


@pytest.mark.parametrize("name", ["simclr", "byol", "mocov2plus"])
def test_resume_after_kill_mid_epoch_equals_uninterrupted(tiny, tmp_path, name):
    full = _method(name)
    fit(full, tiny, epochs=3, batch_size=64, seed=1, progress=False)

    killed = _method(name)
    calls = {"n": 0}
    step = killed.step

    def dying_step(batch):  # dies in the middle of epoch 2, after the epoch-1 checkpoint
        calls["n"] += 1
        if calls["n"] == 5:
            raise _Kill
        return step(batch)

    killed.step = dying_step
    with pytest.raises(_Kill):
        fit(killed, tiny, epochs=3, batch_size=64, seed=1, progress=False, checkpoint_dir=tmp_path)
    resumed = _method(name)
    h = fit(resumed, tiny, epochs=3, batch_size=64, seed=1, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert list(h.epochs["epoch"]) == [1, 2, 3]
    for (n, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tiny, tmp_path):
    m = _method("supervised")
    fit(m, tiny, epochs=1, batch_size=64, seed=0, progress=False, checkpoint_dir=tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(NonFiniteLossError, match="step"):
        fit(m, tiny, epochs=2, batch_size=64, lr=1e12, seed=0, progress=False, checkpoint_dir=tmp_path,
            checkpoint_every=100)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_bad_arguments_raise(tiny):
    m = _method()
    for kwargs, match in [(dict(epochs=0), "epochs"), (dict(epochs=1, optimizer="rmsprop"), "optimizer"),
                          (dict(epochs=1, precision="fp8"), "precision"), (dict(epochs=1, precision="fp16"), "CUDA"),
                          (dict(epochs=1, batch_size=1000), "batch_size"), (dict(epochs=1, resume=True), "checkpoint_dir"),
                          (dict(epochs=1, lr=-1.0), "lr")]:
        kwargs.setdefault("batch_size", 64)
        with pytest.raises(ValueError, match=match):
            fit(m, tiny, progress=False, **kwargs)


def test_lars_scales_updates_per_layer():
    w = torch.nn.Parameter(torch.ones(10))
    b = torch.nn.Parameter(torch.ones(10))
    opt = make_optimizer([{"params": [w], "weight_decay": 0.0}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}],
                         "lars", lr=1.0, momentum=0.0)
    assert isinstance(opt, LARS)
    w.grad = torch.full((10,), 100.0)
    b.grad = torch.full((10,), 100.0)
    opt.step()
    # adapted: eta * ||w|| / ||g|| = 0.02 * sqrt(10) / (100 sqrt(10)) = 2e-4 -> step 100 * 2e-4 = 0.02
    assert torch.allclose(w, torch.full((10,), 0.98))
    assert torch.allclose(b, torch.full((10,), -99.0))


def test_knn_monitor_logs_accuracy_each_epoch(tiny):
    from ssltutor.data import ImageDataset
    from ssltutor.evaluate import KNNMonitor

    images, labels = tiny
    train = ImageDataset(images[:128], labels[:128], [str(i) for i in range(10)], "digits", "train")
    test = ImageDataset(images[128:], labels[128:], [str(i) for i in range(10)], "digits", "test")
    h = fit(_method(), train, epochs=2, batch_size=64, seed=0, progress=False, callbacks=[KNNMonitor(train, test, k=10)])
    assert h.epochs["knn_acc"].between(0.2, 1.0).all()
    with pytest.raises(ValueError, match="every"):
        KNNMonitor(train, test, every=0)
