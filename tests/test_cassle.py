"""CaSSLe (paper 003): distillation losses at their minimum, the frozen past network, task splits, the accuracy
matrix, and a short continual run on real CIFAR-10 images that resumes across tasks exactly."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssltutor import losses, methods
from ssltutor.studies.cassle import ContinualResult, evaluate_backbone, fit_continual, make_tasks
from ssltutor.data import class_incremental_tasks, data_incremental_tasks, load
from ssltutor.evaluate import AccuracyMatrix, continual_metrics, task_accuracies
from ssltutor.studies.base import cap
from ssltutor.methods import Batch
from ssltutor.methods.cassle import CaSSLe
from ssltutor.models import create_backbone
from ssltutor.train import fit

SIX = ["simclr", "byol", "mocov2plus", "barlow_twins", "vicreg", "swav"]
SMALL_OPTIONS = {"swav": {"num_prototypes": 32}, "mocov2plus": {"queue_size": 64}}


def _cassle(name, **kw):
    torch.manual_seed(0)
    return methods.create("cassle", create_backbone("small_convnet", width=8), ssl_method=name, head_scale=1 / 32,
                          ssl_options=SMALL_OPTIONS.get(name), **kw)


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 4, g)


# --- distillation losses: zero (or their minimum) when the prediction equals the frozen projection --------------
def test_predictive_and_mse_distillation_are_zero_at_the_target():
    z = torch.randn(8, 16)
    assert losses.predictive_distillation(z.clone(), z).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.predictive_distillation(3 * z, z).item() == pytest.approx(0.0, abs=1e-6)  # cosine: scale-free
    assert losses.predictive_mse(z.clone(), z).item() == 0.0
    assert losses.predictive_distillation(torch.randn(8, 16), z) > 0.1


def test_decorrelative_distillation_is_zero_for_whitened_equal_projections():
    centred = torch.randn(64, 8, dtype=torch.float64)
    centred -= centred.mean(0)
    u, _, _ = torch.linalg.svd(centred, full_matrices=False)
    z = u * math.sqrt(64)  # zero mean, unit (biased) variance, uncorrelated columns: C = I
    assert losses.decorrelative_distillation(z.clone(), z).item() == pytest.approx(0.0, abs=1e-4)
    assert losses.decorrelative_distillation(z[torch.randperm(64)], z) > 0.1


def test_contrastive_distillation_is_minimal_at_the_target():
    """Orthonormal frozen rows: with p = zbar every anchor has logit 1/tau on its positive and 0 elsewhere, the
    closed form below; any shuffle of p (positives off the diagonal) scores higher."""
    n, tau = 8, 0.2
    zbar = torch.eye(n, 16)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + n - 1))
    assert losses.contrastive_distillation(zbar.clone(), zbar, tau).item() == pytest.approx(expected, rel=1e-5)
    assert losses.contrastive_distillation(zbar.roll(1, dims=0), zbar, tau) > expected + 1


def test_knowledge_distillation_is_minimal_when_scores_match():
    """Cross-entropy with soft targets: at student = frozen scores it equals the targets' entropy and its gradient
    vanishes (the minimum over student scores)."""
    frozen = torch.randn(6, 10)
    student = frozen.clone().requires_grad_(True)
    loss = losses.knowledge_distillation(student, frozen, temperature=0.1)
    q = F.softmax(frozen / 0.1, dim=1)
    entropy = -(q * q.clamp_min(1e-30).log()).sum(1).mean()
    assert loss.item() == pytest.approx(entropy.item(), abs=1e-5)
    loss.backward()
    assert student.grad.abs().max() < 1e-6
    assert losses.knowledge_distillation(torch.randn(6, 10), frozen, 0.1) > loss


@pytest.mark.parametrize("name", ["byol", "vicreg"])
def test_wrapper_distillation_is_zero_right_after_the_copy(name):
    """Identity predictor, frozen BN on batch statistics (the code's mode): the frozen copy equals the current
    network at the start of task 1, so 2 - 2cos and the MSE of g(z) and zbar are exactly zero."""
    m = _cassle(name, frozen_bn_train=True)
    m.train()
    m.start_task(1)
    m.predictor = nn.Identity()
    out = m.step(_batch())
    assert out["distill_loss"].item() == pytest.approx(0.0, abs=1e-5)
    assert out["loss"].item() == pytest.approx(out["ssl_loss"].item(), rel=1e-5)


@pytest.mark.parametrize("name", SIX)
def test_each_method_gets_its_distiller_and_a_finite_loss(name):
    m = _cassle(name)
    assert m.distiller == {"simclr": "contrastive", "mocov2plus": "contrastive", "byol": "predictive",
                           "barlow_twins": "decorrelative", "vicreg": "predictive_mse", "swav": "knowledge"}[name]
    assert m.distill_lambda == (25.0 if name == "vicreg" else 1.0)
    m.train()
    assert set(m.step(_batch())) >= {"loss"}  # task 0: plain SSL
    m.start_task(1)
    out = m.step(_batch())
    assert {"loss", "ssl_loss", "distill_loss"} <= set(out) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in m.predictor.parameters())
    if name == "swav":
        assert m.distill_prototypes.weight.grad is not None and not m.frozen_prototypes.requires_grad


def test_unsupported_base_and_bad_options_raise():
    with pytest.raises(ValueError, match="no distiller"):
        CaSSLe(methods.create("supervised", create_backbone("small_convnet", width=8), num_classes=4))
    with pytest.raises(ValueError, match="knowledge distiller needs SwAV"):
        _cassle("byol", distiller="knowledge")
    with pytest.raises(ValueError, match="distiller must be one of"):
        _cassle("byol", distiller="kd")


# --- the frozen copy --------------------------------------------------------------------------------------------
def _frozen_state(m):
    return {k: v.clone() for k, v in {**m.frozen_backbone.state_dict(), **m.frozen_projector.state_dict()}.items()}


def test_frozen_copy_gets_no_gradient_and_never_changes(shared_data):
    data = cap(load("cifar10", shared_data, "train"), 64, 0)
    m = _cassle("simclr")
    m.start_task(1)
    assert not any(p.requires_grad for p in [*m.frozen_backbone.parameters(), *m.frozen_projector.parameters()])
    trainable = {id(p) for g in m.parameter_groups(1e-4) for p in g["params"]}
    assert not trainable & {id(p) for p in m.frozen_backbone.parameters()}
    before, backbone_before = _frozen_state(m), [p.clone() for p in m.backbone.parameters()]
    fit(m, data, epochs=1, batch_size=16, lr=0.1, progress=False, device="cpu")
    assert all(p.grad is None for p in m.frozen_backbone.parameters())
    after = _frozen_state(m)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics (eval mode)
    assert any(not torch.equal(a, b) for a, b in zip(backbone_before, m.backbone.parameters()))
    assert not m.frozen_backbone.training and m.base.backbone.training is False  # fit ends in eval mode


def test_frozen_bn_train_reproduces_the_code(shared_data):
    """The released code's frozen copy stays in train mode: its weights are fixed, its BN statistics drift."""
    data = cap(load("cifar10", shared_data, "train"), 64, 0)
    m = _cassle("byol", frozen_bn_train=True)
    m.start_task(1)
    before = _frozen_state(m)
    fit(m, data, epochs=1, batch_size=16, lr=0.1, progress=False, device="cpu")
    after = _frozen_state(m)
    weights = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)
    assert any(not torch.equal(before[k], after[k]) for k in before if "running_mean" in k)


def test_predictor_reset_per_task_or_carried_over():
    m = _cassle("byol")
    m.start_task(1)
    g1 = m.predictor
    m.start_task(2)
    assert m.predictor is not g1
    m2 = _cassle("byol", reset_predictor=False)
    m2.start_task(1)
    g1 = m2.predictor
    m2.start_task(2)
    assert m2.predictor is g1


# --- task splits --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset,num_tasks", [("cifar10", 5), ("intel_image", 3)])
def test_class_incremental_tasks_have_no_class_overlap(shared_data, dataset, num_tasks):
    data = load(dataset, shared_data, "train", size=32)
    tasks = make_tasks(data, seed=0)
    assert len(tasks) == num_tasks and all(len(t.classes) == 2 for t in tasks)
    seen = [set(data.labels[t.indices].tolist()) for t in tasks]
    for i in range(num_tasks):
        assert seen[i] == set(tasks[i].classes)
        for j in range(i + 1, num_tasks):
            assert not seen[i] & seen[j] and not set(tasks[i].indices.tolist()) & set(tasks[j].indices.tolist())
    assert sum(len(t) for t in tasks) == len(data)


def test_aptos_is_data_incremental(shared_data):
    data = load("aptos2019", shared_data, "train", size=32)
    tasks = make_tasks(data, seed=0)
    assert all(t.classes == [] for t in tasks)
    idx = torch.cat([t.indices for t in tasks])
    assert len(idx) == len(data) == len(set(idx.tolist()))
    assert tasks[0].indices.tolist() == data_incremental_tasks(len(data), len(tasks), 0)[0].indices.tolist()


# --- the accuracy matrix ------------------------------------------------------------------------------------------
def test_accuracy_matrix_on_a_hand_made_example():
    """Three tasks of two classes; after each task a (pretend) probe predicts the six test samples below."""
    y_true = np.array([0, 1, 2, 3, 4, 5])
    classes = [[0, 1], [2, 3], [4, 5]]
    predictions = [np.array([0, 1, 0, 0, 0, 0]),   # after task 0: task 0 perfect, nothing else
                   np.array([0, 0, 2, 3, 4, 0]),   # after task 1: task 0 half forgotten, task 1 perfect, task 2 half
                   np.array([0, 0, 2, 0, 4, 5])]   # after task 2
    matrix = AccuracyMatrix(3)
    for i, pred in enumerate(predictions):
        matrix.record(i, task_accuracies(y_true, pred, classes))
    R = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]])
    np.testing.assert_allclose(matrix.values, R)
    b = [0.5, 0.5, 0.0]  # random-init probe per task
    m = continual_metrics(matrix.values, random_baseline=b)
    assert m["average_accuracy"] == pytest.approx(2 / 3)
    assert m["forgetting"] == pytest.approx(((1.0 - 0.5) + (1.0 - 0.5)) / 2)
    assert m["backward_transfer"] == pytest.approx(((0.5 - 1.0) + (0.5 - 1.0)) / 2)
    assert m["forward_transfer"] == pytest.approx(((0.0 - 0.5) + (0.5 - 0.0)) / 2)
    result = ContinualResult(matrix.values, [0.3, 0.6, 0.7], b, [])
    assert result.summary() == pytest.approx({"A": 2 / 3, "F": 0.5, "BWT": -0.5, "T": 0.0, "final_accuracy": 0.7})


def test_data_incremental_evaluation_repeats_the_overall_accuracy(shared_data):
    train, test = load("digits", split="train"), load("digits", split="test")
    train, test = cap(train, 200, 0), cap(test, 100, 0)
    tasks = data_incremental_tasks(len(train), 3, 0)
    torch.manual_seed(0)
    ev = evaluate_backbone(create_backbone("small_convnet", width=8), train, test, tasks, device="cpu", epochs=5)
    assert ev.per_task == [ev.overall] * 3 and 0 < ev.overall <= 1


# --- a short continual run on real images, and resume across tasks ------------------------------------------------
def test_continual_run_and_resume_across_tasks_equals_uninterrupted(shared_data, tmp_path):
    train = cap(load("cifar10", shared_data, "train"), 240, 0)
    test = cap(load("cifar10", shared_data, "test"), 100, 0)
    tasks = class_incremental_tasks(train.labels, 5, seed=0)[:3]
    options = dict(batch_size=16, lr=0.05, device="cpu", probe_options={"epochs": 3})

    full_method = _cassle("byol")
    full = fit_continual(full_method, tasks, train, test, 1, checkpoint_dir=tmp_path / "a", **options)
    assert np.isfinite(full.R).all() and len(full.histories) == 3 and len(full.random_baseline) == 3
    assert "distill_loss" not in full.histories[0].steps and "distill_loss" in full.histories[2].steps
    assert set(full.summary()) == {"A", "F", "BWT", "T", "final_accuracy"}

    first = fit_continual(_cassle("byol"), tasks, train, test, 1, checkpoint_dir=tmp_path / "b", stop_after=2,
                          **options)  # "interrupted" after task 2: the resumed run must rebuild the frozen copy
    assert np.isfinite(first.R[:2]).all() and np.isnan(first.R[2]).all()
    resumed_method = _cassle("byol")
    resumed = fit_continual(resumed_method, tasks, train, test, 1, checkpoint_dir=tmp_path / "b", resume=True,
                            **options)
    np.testing.assert_array_equal(resumed.R, full.R)
    assert resumed.random_baseline == full.random_baseline and resumed.overall == full.overall
    full_state, resumed_state = full_method.state_dict(), resumed_method.state_dict()
    assert full_state.keys() == resumed_state.keys()
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    np.testing.assert_array_equal(full.histories[2].steps["loss"], resumed.histories[2].steps["loss"])


def test_create_by_name_shares_the_base_surface():
    m = methods.create("cassle", create_backbone("small_convnet", width=8), dataset="cifar10", ssl_method="byol",
                       head_scale=1 / 32, image_size=32)
    assert isinstance(m.base, methods.BYOL) and m.backbone is m.base.backbone and m.views is m.base.views
    assert m.features(torch.zeros(3, 3, 32, 32, dtype=torch.uint8)).shape == (3, m.backbone.feature_dim)
    names = [n for n, _ in m.named_parameters()]
    assert len(names) == len(set(id(p) for p in m.parameters()))  # the backbone is registered once


def test_weight_normed_swav_gets_weight_normed_distillation_prototypes():
    torch.manual_seed(0)
    m = methods.create("cassle", create_backbone("small_convnet", width=8), ssl_method="swav", head_scale=1 / 32,
                       ssl_options={"num_prototypes": 32, "prototype_norm": "weight_norm"})
    m.start_task(1)
    assert hasattr(m.distill_prototypes, "parametrizations")  # normed like the base's, new learnable lengths
    torch.testing.assert_close(m.frozen_prototypes, m.base.prototypes.weight.detach())
    out = m.step(_batch())
    out["loss"].backward()
    assert torch.isfinite(out["distill_loss"])
    assert m.distill_prototypes.parametrizations.weight.original0.grad.abs().sum() > 0


def test_multi_crop_swav_is_refused_by_the_two_view_distiller():
    torch.manual_seed(0)
    m = methods.create("cassle", create_backbone("small_convnet", width=8), ssl_method="swav", head_scale=1 / 32,
                       ssl_options={"num_prototypes": 32, "num_local_crops": 2, "local_crop_size": 16})
    m.start_task(1)
    with pytest.raises(RuntimeError, match="once per view"):
        m.step(_batch())


def test_cassle_paper_preset_follows_the_cifar_scripts():
    from ssltutor.studies.base import fit_options as _fit_options
    from ssltutor.studies.cassle import probe_options
    from ssltutor.presets import preset

    paper, cpu = preset("paper", paper="cassle"), preset("cpu", paper="cassle")
    options = paper["ssl_options"]
    assert options["simclr"] == {"proj_out": 256}
    assert options["swav"] == {"queue_size": 3840, "queue_start_epoch": 50, "prototype_norm": "weight_norm"}
    assert options["vicreg"] == {"crop_scale": (0.2, 1.0), "view_options": {"solarize_p": (0.1, 0.1)},
                                 "halve_variance": False}
    swav = _fit_options(paper, "swav")
    assert (swav["lr"], swav["min_lr"], swav["weight_decay"], swav["exclude_bias_norm"]) == (0.6, 6e-4, 1e-6, False)
    assert _fit_options(paper, "simclr")["exclude_bias_norm"] is None  # the other scripts exclude them
    assert probe_options(paper)["augment_train"] == "crop_flip" and probe_options(cpu)["augment_train"] == "none"
    m = methods.create("cassle", create_backbone("small_convnet", width=8), ssl_method="simclr",
                       ssl_options=options["simclr"])
    assert m.base.embed_dim == 256


def test_probe_with_crop_flip_views(shared_data):
    train = cap(load("cifar10", root=shared_data, split="train", size=32), 60, 0)
    test = cap(load("cifar10", root=shared_data, split="test", size=32), 40, 0)
    tasks = make_tasks(train, 2, seed=0)
    torch.manual_seed(0)
    backbone = create_backbone("small_convnet", width=8)
    plain = evaluate_backbone(backbone, train, test, tasks, epochs=3)
    augmented = evaluate_backbone(backbone, train, test, tasks, epochs=3, augment_train="crop_flip")
    again = evaluate_backbone(backbone, train, test, tasks, epochs=3, augment_train="crop_flip")
    assert augmented.per_task == again.per_task  # seeded views
    assert augmented.overall != plain.overall or augmented.per_task != plain.per_task
    with pytest.raises(ValueError, match="augment_train"):
        evaluate_backbone(backbone, train, test, tasks, epochs=1, augment_train="jitter")
