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


def test_lr_step_schedule_drops_tenfold_at_each_milestone():
    lrs = [lr_at(s, 10, 0, 1.0, schedule="step", milestones=(6, 8)) for s in range(10)]
    assert lrs[:6] == [1.0] * 6 and lrs[6:8] == [pytest.approx(0.1)] * 2 and lrs[8:] == [pytest.approx(0.01)] * 2
    with pytest.raises(ValueError, match="milestones"):
        lr_at(0, 10, 0, 1.0, schedule="step")
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        lr_at(0, 10, 0, 1.0, schedule="cosin")


def test_fit_rejects_a_schedule_it_cannot_run(tiny):
    with pytest.raises(ValueError, match="fit's schedule must be 'cosine' or 'constant'"):
        fit(_method(), tiny, epochs=1, batch_size=64, schedule="step", progress=False)


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


def ref_lars(w, grads, lr, momentum, wd, trust, clip, nesterov, adapt=True):
    """solo-learn's and the FKT code's LARS written out with Python floats, step after step."""
    w, buf = [float(v) for v in w], None
    for g in grads:
        g = [float(v) for v in g]
        w_norm, g_norm = math.sqrt(sum(v * v for v in w)), math.sqrt(sum(v * v for v in g))
        d = [gi + wd * wi for gi, wi in zip(g, w)]
        if adapt and w_norm > 0 and g_norm > 0:
            ratio = trust * w_norm / (g_norm + wd * w_norm + 1e-8)
            ratio = min(ratio / lr, 1.0) if clip else ratio
            d = [di * ratio for di in d]
        buf = list(d) if buf is None else [momentum * b + di for b, di in zip(buf, d)]
        step = [di + momentum * b for di, b in zip(d, buf)] if nesterov else buf
        w = [wi - lr * s for wi, s in zip(w, step)]
    return w


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("trust,wd", [(0.02, 0.0), (0.02, 1e-4), (1e-3, 1e-6)])
@pytest.mark.parametrize("exclude", [True, False])
def test_lars_matches_reference(clip, nesterov, trust, wd, exclude):
    g = torch.Generator().manual_seed(0)
    w0, b0 = torch.randn(12, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    grads = [(torch.randn(12, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64))
             for _ in range(3)]
    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    groups = [{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}]
    opt = make_optimizer(groups, "lars", lr=0.3, momentum=0.9,
                         options=dict(trust_coefficient=trust, clip=clip, nesterov=nesterov, exclude=exclude))
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
    expected_w = ref_lars(w0, [gw for gw, _ in grads], 0.3, 0.9, wd, trust, clip, nesterov)
    expected_b = ref_lars(b0, [gb for _, gb in grads], 0.3, 0.9, 0.0, trust, clip, nesterov, adapt=not exclude)
    torch.testing.assert_close(w.detach(), torch.tensor(expected_w, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.detach(), torch.tensor(expected_b, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_fkt_lars_step_is_not_the_solo_learn_step():
    """The issue's point: on the same weights and gradient, finetune.py's LARS and solo-learn's differ by ~1000x
    (here ||w|| / ||g|| = 0.25: solo-learn's clipped ratio is 1, plain SGD; the code's is 1e-3 * 0.25)."""
    steps = {}
    for name, options in {"solo": {}, "fkt": dict(trust_coefficient=1e-3, clip=False, nesterov=True)}.items():
        w = torch.nn.Parameter(torch.ones(100, dtype=torch.float64))
        opt = make_optimizer([{"params": [w], "weight_decay": 1e-6}], "lars", lr=0.005, options=options)
        w.grad = torch.full((100,), 4.0, dtype=torch.float64)
        opt.step()
        steps[name] = (1 - w.detach()).abs().mean().item()
    assert steps["solo"] == pytest.approx(0.005 * 4.0, rel=1e-4)
    assert steps["fkt"] == pytest.approx(0.005 * 1.9 * 4.0 * 1e-3 * 0.25, rel=1e-4)  # Nesterov: (1 + 0.9) d
    assert steps["solo"] / steps["fkt"] > 1000


def test_optimizer_options_are_checked_and_passed():
    p = torch.nn.Parameter(torch.ones(3))
    sgd = make_optimizer([{"params": [p], "weight_decay": 0.0}], "sgd", lr=0.1, options={"nesterov": True})
    assert sgd.param_groups[0]["nesterov"] is True
    for name, options, match in [("adam", {"nesterov": True}, "options are none"),
                                 ("lars", {"eta": 0.02}, "trust_coefficient, clip, nesterov, exclude"),
                                 ("sgd", {"clip": False}, "its options are nesterov")]:
        with pytest.raises(ValueError, match=match):
            make_optimizer([{"params": [p], "weight_decay": 0.0}], name, lr=0.1, options=options)
    with pytest.raises(ValueError, match="trust_coefficient"):
        LARS([p], lr=0.1, trust_coefficient=0.0)
    with pytest.raises(ValueError, match="momentum"):
        LARS([p], lr=0.1, momentum=0.0, nesterov=True)


def test_fit_passes_optimizer_options_and_bias_norm_exclusion(tiny, monkeypatch):
    import ssltutor.train as train

    seen = []
    original = train.make_optimizer

    def spy(groups, name, lr, momentum=0.9, options=None):
        seen.append((len(groups), options))
        return original(groups, name, lr, momentum, options)

    monkeypatch.setattr(train, "make_optimizer", spy)
    fit(_method(), tiny, epochs=1, batch_size=96, optimizer="lars", progress=False)
    fit(_method(), tiny, epochs=1, batch_size=96, optimizer="lars", progress=False, exclude_bias_norm=False,
        optimizer_options={"trust_coefficient": 1e-3, "clip": False})
    assert seen == [(2, None), (1, {"trust_coefficient": 1e-3, "clip": False})]
    m = _method()
    groups = m.parameter_groups(1e-4, exclude_bias_norm=False)
    assert len(groups) == 1 and len(groups[0]["params"]) == sum(p.requires_grad for p in m.parameters())
