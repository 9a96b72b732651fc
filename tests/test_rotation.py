"""EffSSL's rotation auxiliary and RotNet: labels match the applied turns, the loss is the sum of its parts, both
learn on a real subset, bad options raise."""
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ssltutor.data import augment, load
from ssltutor.evaluate import knn_accuracy
from ssltutor.methods import BYOL, SimCLR, Batch, RotNet, create, rotation, rotation_class, with_rotation
from ssltutor.models import create_backbone
from ssltutor.studies.rotation import step_time_ratio, summarize
from ssltutor.train import fit

SMALL = dict(head_scale=1 / 32)


def _batch(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return Batch(images, torch.zeros(n, dtype=torch.long), torch.Generator().manual_seed(seed + 1))


def _make(name, seed=0, **kw):
    torch.manual_seed(seed)
    return create(name, create_backbone("small_convnet", width=8), **SMALL, **kw)


def _record_backbone_inputs(method):
    inputs = []
    method.backbone.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    return inputs


def _record_turns(monkeypatch):
    """Capture the (logits, turns) every rotation loss sees."""
    seen = []
    original = rotation.rotation_scores

    def spy(logits, turns):
        seen.append(turns.clone())
        return original(logits, turns)

    monkeypatch.setattr(rotation, "rotation_scores", spy)
    return seen


@pytest.mark.parametrize("name", [f"{b}_rot" for b in rotation.ROTATION_BASES] + ["rotnet"])
def test_every_rotation_method_steps_and_backprops(name):
    m = _make(name, **({"num_prototypes": 32} if name == "swav_rot" else {}))
    out = m.step(_batch())
    assert torch.isfinite(out["loss"]) and 0.0 <= float(out["rot_acc"]) <= 1.0
    out["loss"].backward()
    assert m.rotation_head[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())
    m.on_step_end(0.5)
    m.on_epoch_start(1)
    assert sum(len(g["params"]) for g in m.parameter_groups(1e-4)) == sum(p.requires_grad for p in m.parameters())


def test_rotated_inputs_are_the_views_turned_by_the_labels(monkeypatch):
    m = _make("simclr_rot")
    inputs, turns = _record_backbone_inputs(m), _record_turns(monkeypatch)
    m.step(_batch())
    assert len(inputs) == 4 and len(turns) == 2  # v1, v2 for SimCLR, then rot(v1), rot(v2)
    for view, rotated, k in zip(inputs[:2], inputs[2:], turns):
        assert set(k.tolist()) <= {0, 1, 2, 3}
        for b in range(len(k)):  # per sample, as torch.rot90 on a (3, H, W) image: counter-clockwise turns
            assert torch.equal(rotated[b], torch.rot90(view[b], int(k[b]), dims=(1, 2)))
    assert not torch.equal(turns[0], turns[1])  # independent angles per view


def test_only_the_chosen_views_are_rotated(monkeypatch):
    m = _make("byol_rot", rotated_views=(1,))
    inputs, turns = _record_backbone_inputs(m), _record_turns(monkeypatch)
    m.step(_batch())
    assert len(turns) == 1
    # online forwards of v1, v2, then the rotated copy of v2 (target forwards go through target_backbone)
    assert len(inputs) == 3
    k = turns[0]
    assert all(torch.equal(inputs[2][b], torch.rot90(inputs[1][b], int(k[b]), dims=(1, 2))) for b in range(len(k)))


@pytest.mark.parametrize("weight", [0.1, 0.5])
def test_loss_is_ssl_plus_weighted_sum_of_rotation_ces(monkeypatch, weight):
    base = _make("simclr")
    m = _make("simclr_rot", rotation_weight=weight)
    inputs, turns = _record_backbone_inputs(m), _record_turns(monkeypatch)
    out = m.step(_batch())
    # the SSL term is exactly the base method's loss: same initial weights, same views from the same generator
    assert torch.allclose(out["ssl"], base.step(_batch())["loss"].detach(), atol=1e-6)
    with torch.no_grad():  # train mode: BatchNorm uses the batch statistics, so a second forward is identical
        ces = [F.cross_entropy(m.rotation_head(m.backbone(x)), k) for x, k in zip(inputs[2:], turns)]
    assert torch.allclose(out["rot"], ces[0] + ces[1], atol=1e-5)  # summed, not averaged (EffSSL code)
    assert torch.allclose(out["loss"], out["ssl"] + weight * out["rot"], atol=1e-5)
    assert 0.0 <= float(out["rot_acc"]) <= 1.0 and {"z_std"} <= set(out)


def test_rotation_head_shape_and_width():
    m = _make("simclr_rot")
    linear_in, bn, _, linear_out = m.rotation_head
    assert isinstance(bn, torch.nn.BatchNorm1d) and linear_out.out_features == 4
    assert linear_in.in_features == m.backbone.feature_dim
    assert linear_in.out_features == m.projector[0].out_features  # as wide as the projector's hidden layer
    assert _make("simclr_rot", rotation_hidden=24).rotation_head[0].out_features == 24


def test_base_surface_is_kept():
    m = _make("byol_rot")
    assert isinstance(m, BYOL) and type(m) is rotation_class(BYOL) and type(m).__name__ == "BYOLRotation"
    m.step(_batch())["loss"].backward()
    assert m.rotation_head[0].weight.grad is not None
    before = [p.clone() for p in m.target_backbone.parameters()]
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    m.on_step_end(0.0)  # BYOL's EMA still runs
    assert any(not torch.equal(b, t) for b, t in zip(before, m.target_backbone.parameters()))
    names = {id(p) for g in m.parameter_groups(1e-4) for p in g["params"]}
    assert all(id(p) in names for p in m.rotation_head.parameters())


def test_with_rotation_converts_an_instance_in_place():
    torch.manual_seed(0)
    m = create("vicreg", create_backbone("small_convnet", width=8), **SMALL)
    backbone = m.backbone
    assert with_rotation(m, rotation_weight=0.2) is m
    assert m.backbone is backbone and m.rotation_weight == 0.2 and hasattr(m, "rotation_head")
    assert {"ssl", "rot", "rot_acc"} <= set(m.step(_batch()))
    assert with_rotation(SimCLR) is rotation_class(SimCLR)


def test_bad_options_raise():
    for bad in (dict(rotation_weight=0.0), dict(rotation_weight=-1), dict(rotated_views=(2,)),
                dict(rotated_views=()), dict(rotated_views=(0, 0)), dict(rotation_hidden=0)):
        with pytest.raises(ValueError):
            _make("simclr_rot", **bad)
    with pytest.raises(ValueError, match="allowed are"):
        _make("simclr_rot", rotation_wieght=0.1)
    with pytest.raises(ValueError, match="quarter turns"):  # FKT's views already rotate: the task has no answer
        _make("simclr_rot", views=augment.fkt_views(32))
    m = _make("simclr", views=augment.fkt_views(32))
    with pytest.raises(ValueError):
        with_rotation(m)
    assert type(m) is SimCLR  # a failed conversion leaves the method as it was
    with pytest.raises(ValueError, match="already predicts"):
        rotation_class(RotNet)
    with pytest.raises(ValueError, match="constructor"):
        with_rotation(SimCLR, rotation_weight=0.5)
    with pytest.raises(ValueError):
        rotation_class(int)


def test_rotnet_feeds_all_four_turns():
    m = _make("rotnet")
    inputs = _record_backbone_inputs(m)
    out = m.step(_batch(n=8))
    assert inputs[0].shape[0] == 32 and set(out) == {"loss", "rot_acc"}
    x = inputs[0]
    for k in range(4):  # block k is block 0 turned k times
        assert torch.equal(x[8 * k: 8 * (k + 1)], torch.rot90(x[:8], k, dims=(2, 3)))


@pytest.fixture(scope="module")
def intel(shared_data):
    """640 Intel scene photos at 32 px: outdoor scenes have a canonical "up" (sky on top), so rotation is
    well-posed there."""
    train = load("intel_image", root=shared_data, split="train", size=32)
    test = load("intel_image", root=shared_data, split="test", size=32)
    g = torch.Generator().manual_seed(0)
    return train.subset(torch.randperm(len(train), generator=g)[:640]), test


def test_ssl_plus_rotation_learns_on_real_images(intel):
    """A short CPU run: both losses fall, the rotation head beats chance (25 %), kNN beats chance (1/6)."""
    train, test = intel
    m = _make("simclr_rot", dataset="intel_image")
    epochs = fit(m, train, epochs=4, batch_size=64, lr=0.05, seed=0, progress=False).epochs
    assert epochs["loss"].iloc[-1] < epochs["loss"].iloc[0] and epochs["rot"].iloc[-1] < epochs["rot"].iloc[0]
    assert epochs["rot_acc"].iloc[-1] > 0.3, epochs["rot_acc"].tolist()
    acc = knn_accuracy(m.features(train.images), train.labels, m.features(test.images), test.labels, k=20)
    assert acc > 0.3, acc


def test_rotnet_learns_rotation_on_real_images(intel):
    train, _ = intel
    m = _make("rotnet", dataset="intel_image")
    epochs = fit(m, train, epochs=2, batch_size=64, lr=0.05, seed=0, progress=False).epochs
    assert epochs["rot_acc"].iloc[-1] > 0.45, epochs["rot_acc"].tolist()


def test_step_time_ratio_reports_both_steps():
    r = step_time_ratio("simclr", batch_size=16, width=8, head_scale=1 / 32, repeats=1, rounds=1,
                        precision="fp32", channels_last=False)
    assert r["base_step_s"] > 0 and r["rotation_step_s"] > 0
    assert r["ratio"] == pytest.approx(r["rotation_step_s"] / r["base_step_s"])
    with pytest.raises(ValueError):
        step_time_ratio("simclr", repeats=0)


def test_summarize_gives_mean_and_std_over_seeds():
    runs = pd.DataFrame({"dataset": "d", "base": "simclr", "rotation": [False, False, True, True], "budget": 2,
                         "seed": [0, 1, 0, 1], "knn": [0.2, 0.4, 0.5, 0.5], "train_s": 1.0})
    table = summarize(runs).set_index("rotation")
    assert table.loc[False, "knn_mean"] == pytest.approx(0.3) and table.loc[True, "knn_std"] == pytest.approx(0.0)


def test_study_takes_per_method_options_and_fit_overrides_from_the_preset():
    from ssltutor.methods.ssl import SwAV
    from ssltutor.presets import preset
    from ssltutor.studies.rotation import build_method, fit_options

    paper, cpu = preset("paper", paper="rotation"), preset("cpu", paper="rotation")
    small = dict(paper, backbone="small_convnet", width=8, head_scale=1 / 32)
    swav = build_method("swav", True, small, num_prototypes=16)  # an explicit option wins over the preset's
    assert isinstance(swav, SwAV) and len(swav.views) == 8 and swav.prototypes.out_features == 16
    assert swav.views.views[0].config.scale == (0.14, 1.0)
    assert len(build_method("swav", True, dict(cpu, width=8)).views) == 2  # cpu: two views
    assert len(build_method("simclr", True, small).views) == 2  # the options are SwAV's only
    options = fit_options(paper, "swav", epochs=50)
    assert (options["optimizer"], options["lr"], options["min_lr"], options["weight_decay"]) == ("lars", 0.3, 3e-4,
                                                                                                 1e-6)
    assert options["optimizer_options"] == {"trust_coefficient": 1e-3, "clip": False}
    assert fit_options(paper, "simclr", epochs=50)["lr"] == paper["lr"]
    assert fit_options(paper, "simclr", epochs=50)["min_lr"] == 0.0  # fit's default: the override is SwAV's only
    assert fit_options(paper, "simclr", epochs=3)["warmup_epochs"] == 2  # never longer than the run
