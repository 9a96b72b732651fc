"""Every method: the surface works, bad options raise, and each one learns on real digits in a short CPU run."""
import pytest
import torch

from ssltutor import methods
from ssltutor.data import load
from ssltutor.evaluate import knn_accuracy
from ssltutor.methods import METHODS, Batch, create
from ssltutor.models import create_backbone
from ssltutor.train import fit

SMALL = dict(head_scale=1 / 32)
# The engine's methods; the paper methods registered in METHODS have their own test files.
ENGINE = ["supervised", "simclr", "byol", "mocov2plus", "simsiam", "barlow_twins", "vicreg", "swav"]


def _batch(n=16, size=32, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return Batch(images, torch.arange(n) % classes, g)


def _make(name, **kw):
    opts = dict(kw)
    if name == "supervised":
        opts.setdefault("num_classes", 4)
    else:
        opts.update(SMALL)
    if name == "swav":
        opts.setdefault("num_prototypes", 32)
    if name == "mocov2plus":
        opts.setdefault("queue_size", 64)
    return create(name, create_backbone("small_convnet", width=8), **opts)


@pytest.mark.parametrize("name", ENGINE)
def test_step_returns_finite_loss_and_backprops(name):
    m = _make(name)
    out = m.step(_batch())
    assert set(out) >= {"loss"} and out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in m.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    m.on_step_end(0.5)
    groups = m.parameter_groups(1e-4)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in m.parameters() if p.requires_grad)
    assert all(p.ndim <= 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", [n for n in ENGINE if n != "supervised"])
def test_ssl_step_returns_its_views_features_projections_and_predictions(name):
    """What the wrappers (CaSSLe, DoGo, FKT, rotation) build on: the views, and per view h = f(v), z = g(h) in the
    graph; BYOL and SimSiam also their predictions p = q(z)."""
    m = _make(name)
    out = m.step(_batch())
    views, feats, z = out["views"], out["feats"], out["z"]
    assert len(views) >= 2 and len(feats) == len(z) == 2
    for v, h, zi in zip(views, feats, z):
        assert h.shape == (16, m.backbone.feature_dim) and zi.shape == (16, m.embed_dim) and zi.requires_grad
        torch.testing.assert_close(zi, m.projector(h))
    if name in ("byol", "simsiam"):
        for zi, pi in zip(z, out["p"]):
            torch.testing.assert_close(pi, m.predictor(zi))
    else:
        assert "p" not in out


def test_a_ready_projector_replaces_the_named_head():
    from torch import nn

    backbone = create_backbone("small_convnet", width=8)
    ready = nn.Sequential(nn.Linear(backbone.feature_dim, 24, bias=False), nn.BatchNorm1d(24), nn.ReLU(),
                          nn.Linear(24, 12))
    m = create("simsiam", backbone, projector=ready, **SMALL)
    assert m.projector is ready and m.embed_dim == 12 and m.predictor[0].in_features == 12
    assert m.step(_batch())["z"][0].shape == (16, 12)
    with pytest.raises(ValueError, match="backbone gives"):
        create("simclr", create_backbone("small_convnet", width=8), projector=nn.Sequential(nn.Linear(7, 4)))
    with pytest.raises(ValueError, match="proj_hidden"):
        create("simclr", create_backbone("small_convnet", width=8), projector=ready, proj_out=8)
    with pytest.raises(ValueError, match="nn.Sequential ending in Linear"):
        create("simclr", create_backbone("small_convnet", width=8), projector=nn.ReLU())


def test_every_engine_method_is_registered():
    assert set(ENGINE) <= set(METHODS)


def test_create_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="choose one of"):
        create("dino")
    with pytest.raises(ValueError, match="allowed are"):
        create("simclr", temprature=0.1)
    assert isinstance(create("byol").backbone, type(create_backbone("small_convnet")))


def test_momentum_targets_follow_ema_and_get_no_gradient():
    m = _make("byol")
    assert not any(p.requires_grad for p in m.target_backbone.parameters())
    before = [p.clone() for p in m.target_backbone.parameters()]
    m.step(_batch())["loss"].backward()
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    m.on_step_end(0.0)  # tau = base 0.99
    for b, t, o in zip(before, m.target_backbone.parameters(), m.backbone.parameters()):
        assert torch.allclose(t, 0.99 * b + 0.01 * o, atol=1e-6)
    assert methods.cosine_momentum(0.99, 1.0, 1.0) == pytest.approx(1.0)


def test_moco_queue_receives_keys():
    m = _make("mocov2plus", queue_size=40)
    m.step(_batch(n=16))
    m.on_step_end(0.1)
    assert int(m.queue_ptr) == 16
    norms = m.queue[:, :16].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


def test_swav_prototypes_frozen_early():
    m = _make("swav", freeze_prototypes_epochs=1)
    m.on_epoch_start(0)
    m.step(_batch())["loss"].backward()
    assert m.prototypes.weight.grad is None or m.prototypes.weight.grad.abs().sum() == 0
    m.zero_grad()
    m.on_epoch_start(1)
    m.step(_batch())["loss"].backward()
    assert m.prototypes.weight.grad.abs().sum() > 0


def test_simsiam_without_stop_gradient_is_an_option():
    m = _make("simsiam", stop_gradient=False)
    assert torch.isfinite(m.step(_batch())["loss"])


@pytest.fixture(scope="module")
def digits():
    return load("digits", split="train"), load("digits", split="test")


@pytest.mark.parametrize("name", ENGINE)
def test_method_learns_on_real_digits(name, digits):
    """Loss falls over a short CPU run and kNN accuracy ends well above chance (10 classes: 10%)."""
    train, test = digits
    torch.manual_seed(0)
    m = _make(name, **({"num_classes": 10} if name == "supervised" else {}))
    hist = fit(m, train, epochs=4, batch_size=128, lr=0.05 if name != "supervised" else 0.1, seed=0, progress=False)
    per_epoch = hist.epochs["loss"].tolist()
    assert per_epoch[-1] < per_epoch[0], per_epoch
    f_train, f_test = m.features(train.images), m.features(test.images)
    acc = knn_accuracy(f_train, train.labels, f_test, test.labels, k=20)
    assert acc > 0.5, acc


def test_simsiam_last_projector_bn_has_no_affine_parameters():
    m = _make("simsiam")
    last = m.projector[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine and last.weight is None
    assert m.predictor[0].in_features == last.num_features


def test_swav_weight_normed_prototypes_keep_a_learnable_row_length():
    unit, normed = _make("swav"), _make("swav", prototype_norm="weight_norm")
    assert [n for n, _ in normed.prototypes.named_parameters()] == ["parametrizations.weight.original0",
                                                                  "parametrizations.weight.original1"]
    with torch.no_grad():  # give the rows lengths other than 1
        normed.prototypes.parametrizations.weight.original0.mul_(3.0)
    z = torch.randn(5, normed.embed_dim)
    w = normed.prototypes.weight
    torch.testing.assert_close(normed.scores(z), torch.nn.functional.normalize(z, dim=1) @ w.t())
    assert w.norm(dim=1).mean() > 1.5  # not renormalised to unit rows
    for method in (unit, normed):
        method.on_epoch_start(5)
        method.step(_batch())["loss"].backward()
    assert normed.prototypes.parametrizations.weight.original0.grad.abs().sum() > 0  # the length learns
    torch.testing.assert_close(unit.prototypes.weight.norm(dim=1), torch.ones(32))
    with pytest.raises(ValueError, match="prototype_norm"):
        _make("swav", prototype_norm="l2")


def test_swav_multi_crop_views_and_step():
    m = _make("swav", num_local_crops=4, local_crop_size=16, crop_scale=(0.14, 1.0))
    configs = [v.config for v in m.views.views]
    assert [c.size for c in configs] == [32, 32, 16, 16, 16, 16]
    assert [c.scale for c in configs] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 4
    seen = []
    handle = m.backbone.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    out = m.step(_batch(n=8))
    handle.remove()
    assert seen == [(8, 3, 32, 32), (8, 3, 32, 32), (32, 3, 16, 16)]  # the local crops as one batch
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert len(_make("swav").views) == 2
    with pytest.raises(ValueError, match="num_local_crops"):
        _make("swav", num_local_crops=-1)


def test_swav_rotation_rotates_only_the_global_crops():
    m = create("swav_rot", create_backbone("small_convnet", width=8), num_prototypes=16, num_local_crops=2,
               local_crop_size=16, **SMALL)
    seen = []
    handle = m.backbone.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    out = m.step(_batch(n=8))
    handle.remove()
    assert seen[-2:] == [(8, 3, 32, 32), (8, 3, 32, 32)]  # two rotated global crops after the SwAV passes
    assert torch.isfinite(out["loss"]) and "rot_acc" in out


def test_view_options_reach_the_recipe_and_vicreg_variance_option():
    m = _make("vicreg", crop_scale=(0.2, 1.0), view_options={"solarize_p": (0.1, 0.1)}, halve_variance=False)
    assert [v.config.solarize_p for v in m.views.views] == [0.1, 0.1]
    assert [v.config.scale for v in m.views.views] == [(0.2, 1.0), (0.2, 1.0)]
    assert [v.config.solarize_p for v in _make("vicreg").views.views] == [0.0, 0.2]  # BYOL's asymmetric views
    halved, summed = _make("vicreg"), _make("vicreg", halve_variance=False)
    summed.load_state_dict(halved.state_dict())
    a = halved.step(_batch())
    b = summed.step(_batch())
    torch.testing.assert_close(b["loss"] - a["loss"], 25 * a["variance"])


@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_predictor_lr_scale_puts_the_predictor_in_groups_of_its_own(name):
    from ssltutor.methods import create
    from ssltutor.models import create_backbone

    plain = create(name, create_backbone("small_convnet", width=8), image_size=16, head_scale=0.05)
    assert all("lr_scale" not in g for g in plain.parameter_groups(1e-4))
    fast = create(name, create_backbone("small_convnet", width=8), image_size=16, head_scale=0.05,
                  predictor_lr_scale=10.0)
    groups = fast.parameter_groups(1e-4)
    scaled = {id(p) for g in groups if g.get("lr_scale") == 10.0 for p in g["params"]}
    assert scaled == {id(p) for p in fast.predictor.parameters()}
    assert sum(len(g["params"]) for g in groups) == sum(len(g["params"]) for g in plain.parameter_groups(1e-4))
    assert {g["weight_decay"] for g in groups if g.get("lr_scale") == 10.0} == {1e-4, 0.0}  # bias/BN not decayed
    with pytest.raises(ValueError, match="predictor_lr_scale must be a number > 0"):
        create(name, create_backbone("small_convnet", width=8), image_size=16, predictor_lr_scale=0)


def test_a_wrapped_method_keeps_its_predictor_lr_scale():
    from ssltutor.methods import create
    from ssltutor.methods.cassle import CaSSLe
    from ssltutor.models import create_backbone

    byol = create("byol", create_backbone("small_convnet", width=8), image_size=16, head_scale=0.05,
                  predictor_lr_scale=10.0)
    wrapper = CaSSLe(byol)
    assert wrapper.lr_scales == {"base.predictor": 10.0}
    groups = wrapper.parameter_groups(1e-4)
    scaled = {id(p) for g in groups if g.get("lr_scale") == 10.0 for p in g["params"]}
    assert scaled == {id(p) for p in byol.predictor.parameters()}  # not CaSSLe's own distillation predictor
    assert sum(len(g["params"]) for g in groups) == len([p for p in wrapper.parameters() if p.requires_grad])


def test_fit_scales_the_predictor_learning_rate(digits, monkeypatch):
    from ssltutor import train
    from ssltutor.methods import create
    from ssltutor.models import create_backbone

    made = []
    original = train.make_optimizer
    monkeypatch.setattr(train, "make_optimizer", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    method = create("simsiam", create_backbone("small_convnet", width=8), dataset="digits", head_scale=0.05,
                    predictor_lr_scale=10.0)
    train.fit(method, digits[0].subset(torch.arange(128)), epochs=1, batch_size=64, optimizer="adam", lr=1e-3,
              progress=False)
    lrs = {g.get("lr_scale", 1.0): g["lr"] for g in made[0].param_groups}
    assert lrs[10.0] == pytest.approx(10 * lrs[1.0]) and lrs[1.0] > 0
