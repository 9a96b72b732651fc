"""DoGo (paper 004): similarity distributions, the mutual KL, the one-optimizer equivalence, the probe protocol,
and a short real-data run in which both models learn."""
import copy

import pytest
import torch

from ssltutor import losses
from ssltutor.data import augment, load, symmetric_label_noise
from ssltutor.evaluate import extract_features, knn_accuracy
from ssltutor.studies import dogo as dogo_study
from ssltutor.studies.base import cap
from ssltutor.methods import Batch, SimCLR, SimSiam, create
from ssltutor.methods.dogo import DoGo, backbone_from_name, default_peer, dogo_projector
from ssltutor.presets import preset
from ssltutor.probes import holdout_fraction, probe_key, probe_suite
from ssltutor.train import fit

OPTIONS = dict(head_scale=1 / 16, image_size=16)  # 16 px views keep these unit tests fast


def _pair(**kw) -> DoGo:
    torch.manual_seed(0)
    options = {**OPTIONS, **kw}
    return create("dogo", backbone_from_name("small_convnet4"), peer=options.pop("peer", "small_convnet8"), **options)


def _batch(n=16, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    return Batch(images, torch.arange(n) % 4, g)


def _params(module):
    return [p for p in module.parameters() if p.requires_grad]


def test_similarity_distributions_are_row_stochastic():
    m = _pair()
    batch = _batch()
    dists = m.similarity_distributions(batch.images, batch.generator)
    assert set(dists) == {"model 1", "model 2"}
    for p in dists.values():
        assert p.shape == (16, 16) and (p >= 0).all()
        assert torch.allclose(p.sum(dim=1), torch.ones(16), atol=1e-5)
    base = create("dogo_baseline", backbone_from_name("small_convnet4"), **OPTIONS)
    (p,) = base.similarity_distributions(batch.images, batch.generator).values()
    assert torch.allclose(p.sum(dim=1), torch.ones(16), atol=1e-5)


def test_step_returns_every_part_and_the_sum():
    m = _pair()
    out = m.step(_batch())
    assert set(out) == {"loss", "loss1", "loss2", "ssl1", "ssl2", "kl1", "kl2"}
    assert torch.allclose(out["loss1"], out["ssl1"] + m.lambda1 * out["kl1"])
    assert torch.allclose(out["loss"], out["loss1"] + out["loss2"])
    assert out["kl1"] >= 0 and out["kl2"] >= 0
    assert m.backbones == (m.backbone, m.peer) and m.peer.name == "small_convnet8"
    assert len(m.make_views(_batch())) == 4  # two views per model
    groups = m.parameter_groups(1e-6)  # the fit loop's one optimizer sees every parameter of both models
    assert sum(len(g["params"]) for g in groups) == len(_params(m)) > len(_params(m.backbone))


def _simclr_reference(model, v1, v2):
    """NT-Xent of model 1 on its two views, by hand: DoGo's head and tau 0.5."""
    z1, z2 = model.projector(model.backbone(v1)), model.projector(model.backbone(v2))
    return losses.nt_xent(z1, z2, 0.5), (z1, z2)


def _simsiam_reference(model, v1, v2):
    """SimSiam's symmetric negative cosine with stop-gradient, by hand; returns (loss, predictions, projections)."""
    z1, z2 = model.projector(model.backbone(v1)), model.projector(model.backbone(v2))
    p1, p2 = model.predictor(z1), model.predictor(z2)
    loss = (losses.negative_cosine(p1, z2.detach()) + losses.negative_cosine(p2, z1.detach())) / 2
    return loss, (p1, p2), (z1, z2)


@pytest.mark.parametrize("objectives", [("simclr", "simclr"), ("simclr", "simsiam"), ("simsiam", "simsiam")])
@pytest.mark.parametrize("kl_reduction", ["batchmean", "mean"])
def test_loss_is_both_base_losses_plus_the_weighted_kl_on_each_models_own_views(objectives, kl_reduction):
    """L = L_ssl(model 1) + L_ssl(model 2) + lambda1 KL(P_2 || P_1) + lambda2 KL(P_1 || P_2), every term recomputed
    from the four views the step draws (model 1's two, then model 2's), with the paper's formulas."""
    m = _pair(objective=objectives[0], peer_objective=objectives[1], lambda1=0.7, lambda2=0.2,
              kl_reduction=kl_reduction)
    assert [type(model) for model in m.models] == [{"simclr": SimCLR, "simsiam": SimSiam}[o] for o in objectives]
    assert m.models[0].backbone is m.backbone and m.models[1].backbone is m.peer
    out = m.step(_batch(seed=1))
    again = _batch(seed=1)  # the same images and generator state as the step's batch
    v = m.views(again.images, again.generator)
    parts = []  # (ssl loss, distilled pair, projections) per model
    for model, (a, b) in zip(m.models, (v[:2], v[2:])):
        if isinstance(model, SimCLR):
            loss, z = _simclr_reference(model, a, b)
            parts.append((loss, z, z))
        else:
            parts.append(_simsiam_reference(model, a, b))
    (ssl1, d1, z1), (ssl2, d2, z2) = parts
    both_simsiam = objectives == ("simsiam", "simsiam")
    kl1 = losses.dogo_kl(*d1, *(z2 if both_simsiam else d2), 0.1, kl_reduction)
    kl2 = losses.dogo_kl(*d2, *(z1 if both_simsiam else d1), 0.1, kl_reduction)
    for key, expected in (("ssl1", ssl1), ("ssl2", ssl2), ("kl1", kl1), ("kl2", kl2),
                          ("loss", ssl1 + ssl2 + 0.7 * kl1 + 0.2 * kl2)):
        torch.testing.assert_close(out[key], expected, msg=key)


def _shifted(step, offset):
    def shifted(self, batch):
        out = step(self, batch)
        return {**out, "loss": out["loss"] + offset}
    return shifted


def test_each_ssl_loss_is_the_one_its_base_method_computes(monkeypatch):
    """DoGo has no copy of an objective: change what SimCLR.step and SimSiam.step return and DoGo's SSL terms
    follow, while the KL terms (computed by DoGo from the returned outputs) stay as they were."""
    m, alone = _pair(objective="simclr", peer_objective="simsiam"), create(
        "dogo_baseline", backbone_from_name("small_convnet4"), objective="simsiam", **OPTIONS)
    plain, plain_alone = m.step(_batch()), alone.step(_batch())
    monkeypatch.setattr(SimCLR, "step", _shifted(SimCLR.step, 1.0))
    monkeypatch.setattr(SimSiam, "step", _shifted(SimSiam.step, 10.0))
    shifted, shifted_alone = m.step(_batch()), alone.step(_batch())
    torch.testing.assert_close(shifted["ssl1"], plain["ssl1"] + 1.0)
    torch.testing.assert_close(shifted["ssl2"], plain["ssl2"] + 10.0)
    torch.testing.assert_close(shifted["kl1"], plain["kl1"])
    torch.testing.assert_close(shifted["loss"], plain["loss"] + 11.0)
    torch.testing.assert_close(shifted_alone["loss"], plain_alone["loss"] + 10.0)


def test_state_dict_names_each_parameter_once():
    m = _pair(objective="simclr", peer_objective="simsiam")
    keys = list(m.state_dict())
    assert {k.split(".")[0] for k in keys} == {"models"}
    assert {k.split(".")[2] for k in keys} == {"backbone", "projector", "predictor"}
    assert sum(v.numel() for k, v in m.state_dict().items() if "running" not in k and "num_batches" not in k) == \
        sum(p.numel() for p in m.parameters())
    base = create("dogo_baseline", backbone_from_name("small_convnet4"), **OPTIONS)
    assert {k.split(".")[1] for k in base.state_dict()} == {"backbone", "projector"}


def test_kl_is_zero_when_both_models_produce_the_same_similarities():
    torch.manual_seed(0)
    backbone = backbone_from_name("small_convnet4")
    m = create("dogo", backbone, peer=copy.deepcopy(backbone), **OPTIONS)
    m.models[1].load_state_dict(m.models[0].state_dict())
    plain = augment.eval_transform(16, *augment.IMAGENET_STATS)
    for model in m.models:  # the same two views for both models
        model.views = augment.MultiView([plain, plain])
    out = m.step(_batch())
    assert out["kl1"].abs() < 1e-5 and out["kl2"].abs() < 1e-5
    assert out["ssl1"] > 0  # the SSL terms are untouched


def test_no_gradient_reaches_the_peer_through_the_kl():
    m = _pair()
    out = m.step(_batch())
    peer_side = _params(m.models[1])
    for g in torch.autograd.grad(out["kl1"], peer_side, allow_unused=True):
        assert g is None or g.abs().max() == 0
    own_side = _params(m.models[0])
    assert any(g is not None and g.abs().max() > 0
               for g in torch.autograd.grad(out["kl1"], own_side, allow_unused=True))


@pytest.mark.parametrize("objectives", [("simclr", "simclr"), ("simsiam", "simclr"), ("simsiam", "simsiam")])
def test_one_optimizer_over_both_models_equals_two_optimizers(objectives):
    """d(L1 + L2)/d(theta_1) = dL1/d(theta_1) (and the mirror), so one Adam over both = one Adam per model."""
    m = _pair(objective=objectives[0], peer_objective=objectives[1])
    model1, model2 = _params(m.models[0]), _params(m.models[1])
    out = m.step(_batch())
    total1 = torch.autograd.grad(out["loss"], model1, retain_graph=True)
    alone1 = torch.autograd.grad(out["loss1"], model1, retain_graph=True)
    total2 = torch.autograd.grad(out["loss"], model2, retain_graph=True)
    alone2 = torch.autograd.grad(out["loss2"], model2)
    for a, b in zip(total1 + total2, alone1 + alone2):
        assert torch.allclose(a, b, atol=1e-6)

    # and the optimizer steps agree: one Adam over everything vs one Adam per model
    twin = copy.deepcopy(m)
    one = torch.optim.Adam(_params(m), lr=1e-2, weight_decay=1e-6)
    two = [torch.optim.Adam(_params(model), lr=1e-2, weight_decay=1e-6) for model in twin.models]
    for _ in range(2):  # the second step uses Adam's moment estimates
        out, out_twin = m.step(_batch(seed=3)), twin.step(_batch(seed=3))
        one.zero_grad()
        out["loss"].backward()
        one.step()
        for opt in two:
            opt.zero_grad()
        out_twin["loss1"].backward(retain_graph=True)  # the code: two backward passes, two optimizers
        out_twin["loss2"].backward()
        for opt in two:
            opt.step()
    for a, b in zip(m.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_mean_reduction_divides_by_the_batch_size():
    m_batch, m_mean = _pair(), _pair(kl_reduction="mean")
    a, b = m_batch.step(_batch()), m_mean.step(_batch())
    assert torch.allclose(b["kl1"] * 16, a["kl1"], rtol=1e-4)
    z = torch.randn(8, 5), torch.randn(8, 5)
    assert torch.allclose(losses.similarity_distribution(*z).sum(1), torch.ones(8))


def test_dogo_head_matches_the_code():
    head = dogo_projector(512)
    assert [type(layer).__name__ for layer in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head[0].bias is None and (head[0].in_features, head[0].out_features, head[3].out_features) == (512, 512, 128)


def test_bad_options_raise():
    backbone = backbone_from_name("small_convnet4")
    with pytest.raises(ValueError, match="kl_reduction"):
        create("dogo", backbone, kl_reduction="sum")
    with pytest.raises(ValueError, match="lambda1"):
        create("dogo", backbone, lambda1=-1.0)
    with pytest.raises(ValueError, match="objective"):
        create("dogo", backbone, objective="byol")
    with pytest.raises(ValueError, match="objective"):
        create("dogo", backbone, peer_objective="moco")
    with pytest.raises(ValueError, match="kd_temperature"):
        create("dogo", backbone, kd_temperature=0.0)
    with pytest.raises(ValueError, match="different network"):
        create("dogo", backbone, peer=backbone)
    with pytest.raises(ValueError, match="unknown model name"):
        backbone_from_name("vgg16")
    with pytest.raises(ValueError, match="allowed are"):
        create("dogo", backbone, lamda1=1.0)
    with pytest.raises(ValueError, match="no default peer"):
        default_peer(torch.nn.Identity())
    assert default_peer(backbone_from_name("small_convnet8")).name == "small_convnet16"
    for family in ("fast_convnet", "res_convnet"):  # every CPU convnet family takes a width in its name
        assert backbone_from_name(f"{family}4").name == f"{family}4"
        assert default_peer(backbone_from_name(f"{family}8")).name == f"{family}16"
    with pytest.raises(ValueError, match="res_convnet width must be >= 1"):
        backbone_from_name("res_convnet0")
    with pytest.raises(ValueError, match="unknown training"):
        dogo_study.build("trio", preset("smoke", paper="dogo"))


def test_probe_suite_protocol():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    features = torch.nn.functional.one_hot(labels, 4).float() * 6 + torch.randn(400, 4, generator=g)
    results = probe_suite(features[:300], labels[:300], features[300:], labels[300:], fractions=(1.0, 0.1, 0.01),
                          noise_rates=(0.4,), epochs=20, knn_k=10, lr=0.05)
    assert set(results) == {"linear", "linear_labels_10", "linear_labels_1", "linear_noise_40", "knn"}
    assert all(r > 0.8 for r in results.values()), results
    assert probe_key(0.1) == "linear_labels_10" and probe_key(noise=0.2) == "linear_noise_20"
    assert holdout_fraction(labels[:8], 0.15) == 0.0 and holdout_fraction(labels, 0.15) == 0.15
    noisy = symmetric_label_noise(labels, 0.4, 4, seed=0)
    assert (noisy != labels).sum() == 160
    with pytest.raises(ValueError, match="fractions"):
        probe_suite(features, labels, features, labels, fractions=(0.0,))


def test_both_models_learn_on_a_real_subset(shared_data):
    """A short CPU run on CIFAR-10 (real subset): each model's objective falls and both models' kNN accuracy ends
    well above chance (10 %)."""
    torch.set_num_threads(2)
    train = cap(load("cifar10", root=shared_data, split="train"), 1024, 0)
    test = cap(load("cifar10", root=shared_data, split="test"), 500, 0)
    m = _pair(dataset="cifar10", peer="small_convnet8", head_scale=1 / 8, image_size=32)

    def knn(backbone):
        return knn_accuracy(extract_features(backbone, train.images, transform=m.eval_transform), train.labels,
                            extract_features(backbone, test.images, transform=m.eval_transform), test.labels, k=20)

    hist = fit(m, train, epochs=3, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=1e-6,
               schedule="constant", seed=0, progress=False)
    assert {"ssl1", "ssl2", "kl1", "kl2"} <= set(hist.epochs.columns)
    for key in ("loss1", "loss2", "ssl2"):  # what each model minimises falls; the peer's SSL loss too
        assert hist.epochs[key].iloc[-1] < hist.epochs[key].iloc[0], hist.epochs[key].tolist()
    accuracies = [knn(b) for b in m.backbones]
    assert min(accuracies) > 0.2, accuracies
