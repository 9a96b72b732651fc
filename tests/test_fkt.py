"""FKT (arXiv 2304.01354): the joint loss, its options, the three variants on real data, model selection, Grad-CAM."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssltutor import gradcam, losses
from ssltutor.data import augment
from ssltutor.methods import Batch, SimCLR, create
from ssltutor.studies import fkt
from ssltutor.models import create_backbone
from ssltutor.presets import PAPER_PRESETS, preset


def _batch(n=16, size=32, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return images, torch.arange(n) % classes


def _fkt(**options):
    torch.manual_seed(0)
    return fkt.FKT(create_backbone("small_convnet", width=8), num_classes=4, image_size=32, **options)


def _step(method, images, labels, seed=0):
    return method.step(Batch(images, labels, torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("ssl_weight", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("classifier_input", ["clean", "augmented"])
def test_joint_loss_is_the_sum_of_its_parts(ssl_weight, classifier_input):
    method = _fkt(ssl_weight=ssl_weight, classifier_input=classifier_input)
    images, labels = _batch()
    out = _step(method, images, labels)
    assert set(out) >= {"loss", "ce", "ssl", "acc"}
    torch.testing.assert_close(out["loss"], out["ce"] + ssl_weight * out["ssl"])
    # Recompute both terms by hand from the same views (same generator seed; BN in train mode uses batch stats).
    v1, v2 = method.views(images, torch.Generator().manual_seed(0))
    h1, h2 = method.backbone(v1), method.backbone(v2)
    ssl = losses.nt_xent(method.projector(h1), method.projector(h2), temperature=0.5, normalize=True)
    x = method.eval_transform(images) if classifier_input == "clean" else v1
    ce = F.cross_entropy(method.classifier(method.backbone(x)), labels)
    torch.testing.assert_close(out["ssl"], ssl)
    torch.testing.assert_close(out["ce"], ce)


@pytest.mark.parametrize("similarity", fkt.SIMILARITIES)
def test_ssl_term_is_the_loss_of_a_simclr_step_on_the_same_views(similarity):
    """The NT-Xent term is SimCLR's: a separate SimCLR on FKT's backbone, projector, tau, similarity and views
    gives the same loss from the same generator state."""
    method = _fkt(similarity=similarity, ssl_weight=0.3)
    images, labels = _batch()
    out = _step(method, images, labels)
    simclr = SimCLR(method.backbone, temperature=0.5, normalize=similarity == "cosine", image_size=32,
                    views=method.views, projector=method.projector)
    torch.testing.assert_close(out["ssl"], _step(simclr, images, labels)["loss"].detach())
    assert isinstance(method.base, SimCLR) and method.base.normalize == (similarity == "cosine")


def test_fkt_has_no_copy_of_nt_xent(monkeypatch):
    """Change what SimCLR.step returns and FKT's SSL term follows; the cross-entropy does not move."""
    method = _fkt(ssl_weight=0.3)
    images, labels = _batch()
    plain = _step(method, images, labels)
    step = SimCLR.step
    monkeypatch.setattr(SimCLR, "step", lambda self, batch: {**(out := step(self, batch)), "loss": out["loss"] + 1.0})
    shifted = _step(method, images, labels)
    torch.testing.assert_close(shifted["ssl"], plain["ssl"] + 1.0)
    torch.testing.assert_close(shifted["ce"], plain["ce"])
    torch.testing.assert_close(shifted["loss"], plain["loss"] + 0.3)


def test_rt_pretrains_with_the_simclr_branch_of_fkt():
    settings = preset("cpu", paper="fkt")
    stats = augment.FKT_CODE_STATS
    rt = fkt.build_method("rt", create_backbone("small_convnet", width=8), 4, settings, stats)
    joint = fkt.build_method("fkt", create_backbone("small_convnet", width=8), 4, settings, stats)
    assert type(rt) is SimCLR and type(joint.base) is SimCLR
    assert (rt.temperature, rt.normalize) == (joint.base.temperature, joint.base.normalize)
    assert str(rt.projector) == str(joint.projector)
    assert [v.config for v in rt.views.views.views] == [v.config for v in joint.views.views.views]
    assert {k.split(".")[0] for k in joint.state_dict()} == {"classifier", "base"}


def test_loss_backpropagates_into_backbone_classifier_and_projector():
    method = _fkt()
    _step(method, *_batch())["loss"].backward()
    for part in (method.backbone, method.classifier, method.projector):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())


def test_dot_similarity_is_the_raw_dot_product_of_the_code():
    images, labels = _batch()
    cos, dot = _step(_fkt(similarity="cosine"), images, labels), _step(_fkt(similarity="dot"), images, labels)
    torch.testing.assert_close(cos["ce"], dot["ce"])  # same init, same views: only the SSL term differs
    method = _fkt(similarity="dot")
    v1, v2 = method.views(images, torch.Generator().manual_seed(0))
    z1, z2 = method.projector(method.backbone(v1)), method.projector(method.backbone(v2))
    torch.testing.assert_close(dot["ssl"], losses.nt_xent(z1, z2, 0.5, normalize=False))
    assert not torch.isclose(cos["ssl"], dot["ssl"])


def test_projector_follows_the_code_and_scales_with_the_backbone():
    dims = lambda head: [m.in_features for m in head if isinstance(m, torch.nn.Linear)] + [head[-1].out_features]
    assert dims(fkt.fkt_projector(512)) == [512, 1024, 128]
    assert dims(fkt.fkt_projector(2048)) == [2048, 1024, 128]
    assert dims(fkt.fkt_projector(128)) == [128, 256, 32]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fkt.fkt_projector(512))


@pytest.mark.parametrize("options", [dict(similarity="l2"), dict(classifier_input="noisy"), dict(temperature=0.0),
                                     dict(ssl_weight=-1.0), dict(num_classes=1)])
def test_bad_options_raise_value_error(options):
    kwargs = dict(num_classes=4) | options
    with pytest.raises(ValueError):
        fkt.FKT(create_backbone("small_convnet", width=8), **kwargs)


def test_bad_experiment_options_raise_value_error():
    settings = preset("smoke", paper="fkt")
    data = fkt.Splits(*[_dataset(8) for _ in range(3)])
    for kwargs in (dict(variant="fkt", select_on="train"), dict(variant="simclr")):
        with pytest.raises(ValueError, match="must be one of"):
            fkt.run_variant(kwargs.pop("variant"), data, settings, **kwargs)
    with pytest.raises(ValueError, match="'fkt' only"):
        fkt.run_variant("supervised", data, settings, ssl_weight=0.5)
    with pytest.raises(ValueError, match="fractions"):
        fkt.fraction_sweep(data, settings, fractions=(0.0,))


def test_registered_and_created_by_name():
    method = create("fkt", create_backbone("small_convnet", width=8), num_classes=6, dataset="intel_image",
                    similarity="dot")
    assert isinstance(method, fkt.FKT) and method.similarity == "dot"
    assert method.stats == augment.STATS["intel_image"]


def test_presets_keep_the_code_values_for_paper():
    assert set(PAPER_PRESETS["fkt"]) == {"smoke", "cpu", "colab", "paper"}
    paper = preset("paper", paper="fkt")
    assert (paper["backbone"], paper["image_size"], paper["batch_size"], paper["epochs"]) == ("resnet50", 224, 256, 100)
    assert (paper["optimizer"], paper["lr"], paper["momentum"], paper["weight_decay"]) == ("sgd", 2.5e-4, 0.9, 1e-6)
    assert paper["schedule"] == "constant" and paper["warmup_epochs"] == 0
    assert (paper["ssl_weight"], paper["temperature"]) == (1.0, 0.5)
    for name in ("smoke", "cpu"):
        assert preset(name, paper="fkt")["similarity"] == "cosine"


def _dataset(n, classes=4, size=32, seed=0):
    from ssltutor.data import ImageDataset

    images, labels = _batch(n, size, classes, seed)
    return ImageDataset(images, labels, [str(c) for c in range(classes)], "toy", "train")


# ---------------------------------------------------------------------------------------------------------------
# Model selection
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture()
def spy(monkeypatch):
    """Record which image tensor each prediction call scores."""
    calls = []
    real = fkt.predict_labels

    def recording(method, images, transform, device=None, batch_size=512):
        calls.append(images)
        return real(method, images, transform, device, batch_size)

    monkeypatch.setattr(fkt, "predict_labels", recording)
    return calls


@pytest.mark.parametrize("variant", ["supervised", "rt", "fkt"])
def test_selection_never_touches_the_test_split_by_default(spy, variant):
    settings = preset("smoke", paper="fkt", epochs=2, pretrain_epochs=1, finetune_epochs=2, batch_size=16)
    data = fkt.Splits(_dataset(48, seed=1), _dataset(16, seed=2), _dataset(16, seed=3))
    result = fkt.run_variant(variant, data, settings, seed=0, device="cpu")
    assert [c is data.val.images for c in spy[:-1]] == [True, True]  # one selection call per (fine-tuning) epoch
    assert spy[-1] is data.test.images and sum(c is data.test.images for c in spy) == 1  # scored once, at the end
    assert result.best_epoch == int(result.history.val_acc.idxmax()) + 1


def test_select_on_test_is_the_flagged_code_protocol(spy):
    settings = preset("smoke", paper="fkt", epochs=2, batch_size=16)
    data = fkt.Splits(_dataset(48, seed=1), _dataset(16, seed=2), _dataset(16, seed=3))
    result = fkt.run_variant("fkt", data, settings, seed=0, device="cpu", select_on="test")
    assert all(c is data.test.images for c in spy) and len(spy) == 3
    assert result.select_on == "test" and "test_acc" in result.history


def test_best_epoch_keeps_a_copy_of_the_weights():
    method = _fkt()
    data = _dataset(16)
    best = fkt.BestEpoch(data, method.eval_transform)

    class State:
        epoch, device = 1, torch.device("cpu")

    State.method = method
    best(State)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(1.0)
    best.restore(method)
    weight = method.classifier.weight.detach().clone()
    torch.manual_seed(0)
    fresh = _fkt()
    torch.testing.assert_close(weight, fresh.classifier.weight)


def test_carved_validation_split_is_disjoint_and_stratified():
    data = _dataset(40)
    train, val = fkt.carve_val(data, 0.25, seed=0)
    assert len(train) + len(val) == 40 and len(val) == 10
    assert sorted(torch.bincount(val.labels).tolist()) == [2, 2, 3, 3]
    rows = lambda d: {tuple(x.flatten()[:64].tolist()) for x in d.images}
    assert not rows(train) & rows(val)


# ---------------------------------------------------------------------------------------------------------------
# Real data: each variant learns
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def intel(shared_data):
    settings = preset("smoke", paper="fkt", max_train=480, max_test=240)
    return fkt.load_splits("intel_image", shared_data, settings, seed=0), settings


@pytest.mark.parametrize("variant", ["supervised", "rt", "fkt"])
def test_each_variant_learns_above_chance_on_intel(intel, variant):
    data, settings = intel
    settings = dict(settings, epochs=4, pretrain_epochs=2, finetune_epochs=3, batch_size=32, lr=0.05)
    result = fkt.run_variant(variant, data, settings, seed=0, device="cpu")
    chance = 1 / data.num_classes
    assert result.metrics["accuracy"] > chance + 0.12, result.metrics
    assert set(result.metrics) >= {"accuracy", "precision_macro", "recall_macro", "kappa_quadratic"}
    if variant == "fkt":
        assert {"ce", "ssl"} <= set(result.steps.columns)


def test_validation_split_comes_from_train_not_test(intel):
    data, _ = intel
    assert len(data.val) == math.ceil(0.15 * 480) and len(data.train) == 480 - len(data.val)
    key = lambda d: {bytes(x.flatten()[::7].tolist()) for x in d.images}
    assert not key(data.val) & key(data.test) and not key(data.val) & key(data.train)


def test_fraction_sweep_reuses_the_full_runs(intel):
    data, settings = intel
    full = {"supervised": fkt.run_variant("supervised", data, settings, seed=0, device="cpu")}
    table = fkt.fraction_sweep(data, settings, (0.25, 1.0), variants=("supervised",), seed=0, full=full, device="cpu")
    assert table.fraction.tolist() == [0.25, 1.0]
    assert table.accuracy.iloc[1] == full["supervised"].metrics["accuracy"]


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------------------------
def _model(seed=0, classes=5):
    torch.manual_seed(seed)
    return create_backbone("small_convnet", width=8), torch.nn.Linear(64, classes)


def test_grad_cam_shape_range_and_no_side_effects():
    backbone, classifier = _model()
    backbone.train()
    x = torch.randn(3, 3, 32, 32)
    maps = gradcam.grad_cam(backbone, classifier, x)
    assert maps.shape == (3, 32, 32) and maps.dtype == torch.float32
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert all(float(m.max()) in (0.0, 1.0) for m in maps)  # each map scaled to peak 1 (or all zero)
    assert backbone.training and all(p.grad is None for p in backbone.parameters())


def test_grad_cam_matches_the_closed_form_for_a_linear_head():
    # With global average pooling and a linear head, d y_c / d A_k(i, j) = W[c, k] / (h w): the map is
    # ReLU(sum_k W[c, k] A_k), upsampled and scaled to peak 1.
    backbone, classifier = _model()
    x = torch.randn(2, 3, 32, 32)
    backbone.eval()
    with torch.no_grad():
        a = backbone.forward_stages(backbone.stem(x))
        for c in (0, 3):
            ref = F.relu(torch.einsum("k,bkhw->bhw", classifier.weight[c], a)).unsqueeze(1)
            ref = F.interpolate(ref, size=(32, 32), mode="bilinear", align_corners=False).squeeze(1)
            ref = ref / ref.flatten(1).amax(1).view(-1, 1, 1)
            torch.testing.assert_close(gradcam.grad_cam(backbone, classifier, x, target_class=c), ref)


def test_grad_cam_depends_on_the_target_class_and_stage():
    backbone, classifier = _model()
    x = torch.randn(2, 3, 32, 32)
    m0, m1 = (gradcam.grad_cam(backbone, classifier, x, target_class=c) for c in (0, 1))
    assert not torch.allclose(m0, m1)
    per_sample = gradcam.grad_cam(backbone, classifier, x, target_class=torch.tensor([0, 1]))
    torch.testing.assert_close(per_sample, torch.stack([m0[0], m1[1]]))
    assert gradcam.grad_cam(backbone, classifier, x, stage=1).shape == (2, 32, 32)
    with pytest.raises(ValueError):
        gradcam.grad_cam(backbone, classifier, x, target_class=7)
    with pytest.raises(ValueError):
        gradcam.grad_cam(backbone, classifier, x, stage=4)


def test_plot_grad_cam_draws_one_column_per_model():
    import matplotlib.pyplot as plt

    backbone, classifier = _model()
    images, _ = _batch(2)
    maps = gradcam.grad_cam(backbone, classifier, augment.eval_transform(32, *augment.IMAGENET_STATS)(images))
    fig = gradcam.plot_grad_cam(images, {"a": maps, "b": maps[:, ::2, ::2]}, captions=["x", "y"])
    assert len(fig.axes) == 6
    plt.close(fig)
