"""Tests for ssltutor.evaluate: features, weighted kNN, linear probe, metrics and continual-learning scores."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import nn

from ssltutor.train import lr_at
from ssltutor import evaluate
from ssltutor.evaluate import (
    AccuracyMatrix,
    classification_metrics,
    continual_metrics,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe,
    task_accuracies,
)


# ---------------------------------------------------------------------------------------------------------------
# extract_features
# ---------------------------------------------------------------------------------------------------------------
def _tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    net[1].running_mean.uniform_(-0.2, 0.2)  # non-trivial running stats: train and eval modes differ
    net[1].running_var.uniform_(0.5, 2.0)
    return net


@pytest.mark.parametrize("start_training", [True, False])
def test_extract_features_matches_eval_forward_and_restores_mode(start_training):
    net = _tiny_backbone().train(start_training)
    images = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8)
    feats = extract_features(net, images, batch_size=3)  # ragged last batch
    assert net.training is start_training
    assert all(m.training is start_training for m in net.modules())
    net.eval()
    with torch.no_grad():
        expected = net(images.float() / 255)
    assert feats.shape == (7, 4) and feats.dtype == torch.float32
    assert not feats.requires_grad
    torch.testing.assert_close(feats, expected)


def test_extract_features_uses_transform():
    net = _tiny_backbone()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    calls = []

    def transform(batch, generator):
        calls.append((batch.dtype, generator))
        return (batch.float() / 255 - 0.5) / 0.25

    feats = extract_features(net, images, transform=transform, batch_size=2)
    assert calls == [(torch.uint8, None)] * 3
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(feats, net((images.float() / 255 - 0.5) / 0.25))


def test_extract_features_rejects_bad_shape():
    with pytest.raises(ValueError, match="images"):
        extract_features(_tiny_backbone(), torch.zeros(3, 8, 8, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------------------------
# kNN
# ---------------------------------------------------------------------------------------------------------------
def test_knn_obvious_answer():
    # Three classes along three axes; queries point near one axis each (scale must not matter: cosine).
    train = torch.tensor([[1.0, 0, 0], [2, 0.1, 0], [0, 1, 0], [0, 3, 0.1], [0, 0, 1], [0.1, 0, 5]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    test = torch.tensor([[10.0, 1, 0], [0, 0.2, 0.1], [0, 0.1, 7], [0.9, 0, 0.1]])
    expected = torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(knn_predict(train, labels, test, k=2), expected)
    assert knn_accuracy(train, labels, test, expected, k=2) == 1.0


def _knn_reference(train, labels, test, k, temperature, num_classes):
    """Slow loop: cosine similarity, top-k, exp(sim / T) votes per class."""
    predictions = []
    for q in test:
        sims = [(torch.dot(q, t) / (q.norm() * t.norm())).item() for t in train]
        order = sorted(range(len(train)), key=lambda i: -sims[i])[:k]
        scores = [0.0] * num_classes
        for i in order:
            scores[int(labels[i])] += math.exp(sims[i] / temperature)
        predictions.append(max(range(num_classes), key=lambda c: scores[c]))
    return torch.tensor(predictions)


@pytest.mark.parametrize("k,temperature", [(1, 0.1), (5, 0.07), (20, 0.5), (500, 0.1)])
def test_knn_matches_slow_reference(k, temperature):
    g = torch.Generator().manual_seed(k)
    train = torch.randn(60, 8, generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    test = torch.randn(25, 8, generator=g)
    got = evaluate.knn_predict(train, labels, test, k=k, temperature=temperature, num_classes=5, chunk_size=7)
    torch.testing.assert_close(got, _knn_reference(train, labels, test, min(k, 60), temperature, 5))


def test_knn_k_is_capped_and_inputs_validated():
    train, labels = torch.randn(4, 3), torch.tensor([0, 1, 1, 1])
    assert knn_predict(train, labels, torch.randn(2, 3), k=200).shape == (2,)
    with pytest.raises(ValueError, match="negative"):
        knn_predict(train, torch.tensor([0, -1, 1, 1]), torch.randn(2, 3))
    with pytest.raises(ValueError, match="dims"):
        knn_predict(train, labels, torch.randn(2, 5))


# ---------------------------------------------------------------------------------------------------------------
# Linear probe
# ---------------------------------------------------------------------------------------------------------------
def _separable(n_per_class=60, num_classes=4, dim=16, seed=0, offset=5.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 3
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    features = centers[labels] + 0.5 * torch.randn(len(labels), dim, generator=g) + offset  # off-centre on purpose
    perm = torch.randperm(len(labels), generator=g)
    return features[perm], labels[perm]


def test_linear_probe_separable_reaches_full_accuracy():
    x, y = _separable(seed=0)
    x_test, y_test = _separable(n_per_class=25, seed=0)
    result = linear_probe(x, y, x_test, y_test, epochs=30, batch_size=64)
    assert result.accuracy >= 0.99
    assert result.best_epoch == 30 and result.val_accuracy is None  # no validation data: the last epoch
    assert len(result.history) == 30 and result.history[-1]["train_accuracy"] >= 0.99
    # The returned layer takes raw features (standardization folded in) and reproduces the predictions.
    torch.testing.assert_close(result.linear(x_test).argmax(1), result.predictions)


@pytest.mark.parametrize("options", [dict(optimizer="sgd", schedule="step"), dict(batch_size=None, standardize=False)])
def test_linear_probe_other_settings(options):
    x, y = _separable(seed=1, offset=0.0)
    result = linear_probe(x, y, x, y, epochs=40, **options)
    assert result.accuracy >= 0.99


def test_linear_probe_schedules_are_the_fit_loops():
    x, y = _separable(seed=1, offset=0.0)
    step = linear_probe(x, y, x, y, epochs=10, optimizer="sgd", lr=1.0, schedule="step", batch_size=None)
    assert [h["lr"] for h in step.history] == pytest.approx([1.0] * 6 + [0.1] * 2 + [0.01] * 2)
    cosine = linear_probe(x, y, x, y, epochs=4, lr=0.2, batch_size=None)
    assert [h["lr"] for h in cosine.history] == [lr_at(s, 4, 0, 0.2) for s in range(4)]


def test_linear_probe_selects_by_validation_never_by_test():
    x, y = _separable(seed=2)
    g = torch.Generator().manual_seed(3)
    x_val = _separable(n_per_class=10, seed=2)[0]
    y_val = torch.randint(0, 4, (len(x_val),), generator=g)  # noisy val labels: the best epoch is not the last
    x_test, y_test = _separable(n_per_class=20, seed=2)
    runs = [
        linear_probe(x, y, x_test, labels, val=(x_val, y_val), epochs=20, lr=0.05, batch_size=80)
        for labels in (y_test, y_test[torch.randperm(len(y_test), generator=g)])
    ]
    first, second = runs
    val_curve = [h["val_accuracy"] for h in first.history]
    assert first.best_epoch == 1 + int(np.argmax(val_curve))  # earliest epoch of best validation accuracy
    assert first.val_accuracy == max(val_curve)
    # The kept weights are those of the selected epoch: they reproduce its validation accuracy.
    assert (first.linear(x_val).argmax(1) == y_val).float().mean().item() == pytest.approx(first.val_accuracy)
    # Changing the test labels changes nothing but the reported test accuracy.
    assert all(not any("test" in key for key in h) for h in first.history)
    assert first.best_epoch == second.best_epoch and first.history == second.history
    torch.testing.assert_close(first.linear.weight, second.linear.weight)
    torch.testing.assert_close(first.predictions, second.predictions)
    assert first.accuracy != second.accuracy


def test_linear_probe_val_fraction_holds_out_train_samples():
    x, y = _separable(seed=4)
    result = linear_probe(x, y, x, y, val_fraction=0.15, epochs=10, seed=1)
    assert result.val_accuracy is not None and result.val_accuracy >= 0.95
    assert 1 <= result.best_epoch <= 10
    again = linear_probe(x, y, x, y, val_fraction=0.15, epochs=10, seed=1)
    assert again.history == result.history  # one seed, the same run


def test_linear_probe_validates_arguments():
    x, y = _separable(n_per_class=5)
    with pytest.raises(ValueError, match="optimizer"):
        linear_probe(x, y, x, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="val_fraction"):
        linear_probe(x, y, x, y, val_fraction=1.5)


# ---------------------------------------------------------------------------------------------------------------
# Classification metrics
# ---------------------------------------------------------------------------------------------------------------
def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    got = classification_metrics(torch.from_numpy(y_true), torch.from_numpy(y_pred))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert got["precision_macro"] == pytest.approx(skm.precision_score(y_true, y_pred, average="macro"))
    assert got["recall_macro"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["kappa_quadratic"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred, weights="quadratic"))


def test_classification_metrics_edge_cases():
    perfect = classification_metrics([0, 1, 2, 2, 4], [0, 1, 2, 2, 4])
    assert perfect["kappa_quadratic"] == 1.0 and perfect["accuracy"] == 1.0
    assert classification_metrics([3, 3], [3, 3])["kappa_quadratic"] == 1.0  # one class: sklearn's 0/0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0: no warning for a never-predicted class
        got = classification_metrics([0, 1, 1], [0, 0, 0], num_classes=3)
    # per class precision [1/3, 0, 0] and recall [1, 0, 0] over the 3 classes
    assert got["precision_macro"] == pytest.approx(1 / 9) and got["recall_macro"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------------------------
# Continual learning
# ---------------------------------------------------------------------------------------------------------------
R = np.array([
    [0.80, 0.10, 0.10],
    [0.60, 0.90, 0.20],
    [0.50, 0.70, 0.95],
])


def test_continual_metrics_hand_made_matrix():
    got = continual_metrics(R, random_baseline=[0.10, 0.05, 0.10])
    assert got["average_accuracy"] == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    assert got["forgetting"] == pytest.approx(((0.80 - 0.50) + (0.90 - 0.70)) / 2)  # 0.25
    assert got["backward_transfer"] == pytest.approx(((0.50 - 0.80) + (0.70 - 0.90)) / 2)  # -0.25
    assert got["forward_transfer"] == pytest.approx(((0.10 - 0.05) + (0.20 - 0.10)) / 2)  # 0.075
    assert continual_metrics(torch.tensor(R))["forward_transfer"] is None
    assert continual_metrics(R, random_baseline=0.1)["forward_transfer"] == pytest.approx(0.05)


def test_forgetting_uses_best_earlier_row_not_the_diagonal():
    R2 = np.array([[0.80, 0.60, 0.30], [0.90, 0.50, 0.40], [0.70, 0.55, 0.90]])
    got = continual_metrics(R2)
    assert got["forgetting"] == pytest.approx(((0.90 - 0.70) + (0.60 - 0.55)) / 2)  # 0.125
    assert got["backward_transfer"] == pytest.approx(((0.70 - 0.80) + (0.55 - 0.50)) / 2)  # -0.025


def test_continual_metrics_validation_and_single_task():
    single = continual_metrics([[0.7]], random_baseline=[0.1])
    assert single == {"average_accuracy": 0.7, "forgetting": None, "backward_transfer": None, "forward_transfer": None}
    with pytest.raises(ValueError, match="square"):
        continual_metrics(np.zeros((2, 3)))
    bad = R.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="diagonal"):
        continual_metrics(bad)
    upper_missing = np.where(np.triu(np.ones((3, 3)), 1) > 0, np.nan, R)
    assert continual_metrics(upper_missing)["forgetting"] == pytest.approx(0.25)  # upper triangle not needed
    with pytest.raises(ValueError, match="forward transfer"):
        continual_metrics(upper_missing, random_baseline=0.1)
    with pytest.raises(ValueError, match="random_baseline"):
        continual_metrics(R, random_baseline=[0.1, 0.1])


def test_accuracy_matrix_and_task_accuracies():
    tasks = [[0, 1], [2, 3], [4, 5]]
    y_true = np.array([0, 1, 2, 3, 4, 5, 0, 2])
    y_pred = np.array([0, 1, 2, 0, 5, 5, 1, 2])
    got = task_accuracies(torch.from_numpy(y_true), torch.from_numpy(y_pred), tasks)
    assert got == pytest.approx([2 / 3, 2 / 3, 1 / 2])
    with pytest.raises(ValueError, match="task 1"):
        task_accuracies([0, 1], [0, 1], [[0, 1], [7]])

    matrix = AccuracyMatrix(3)
    assert not matrix.complete
    for i, row in enumerate(R):
        matrix.record(i, row)
    assert matrix.complete
    np.testing.assert_array_equal(matrix.values, R)
    assert matrix.metrics() == continual_metrics(R)
    with pytest.raises(ValueError, match="3 accuracies"):
        matrix.record(0, [0.1, 0.2])


# ---------------------------------------------------------------------------------------------------------------
# Real images: the whole evaluation chain on a CIFAR-10 subset
# ---------------------------------------------------------------------------------------------------------------
def test_evaluation_chain_on_real_cifar10(shared_data):
    from ssltutor import data
    from ssltutor.data import augment
    from ssltutor.data.splits import stratified_split
    from ssltutor.models.backbones import create_backbone

    images = data.load("cifar10", root=shared_data, split="test")  # 1,000 real images, 10 classes
    images = images.subset(stratified_split(images.labels, 0.4, seed=0)[1])  # 400 keep the test fast
    train_idx, test_idx = stratified_split(images.labels, 0.4, seed=0)
    torch.manual_seed(0)
    backbone = create_backbone("small_convnet").train()
    transform = augment.eval_transform(32, *augment.STATS["cifar10"])
    features = extract_features(backbone, images.images, transform, batch_size=256)
    assert backbone.training and features.shape[0] == 400 and torch.isfinite(features).all()
    x_train, y_train = features[train_idx], images.labels[train_idx]
    x_test, y_test = features[test_idx], images.labels[test_idx]
    # Random-init conv features are already better than chance (0.1) on real images.
    knn = knn_accuracy(x_train, y_train, x_test, y_test, k=20)
    result = linear_probe(x_train, y_train, x_test, y_test, val_fraction=0.15, epochs=20)
    assert knn > 0.15 and result.accuracy > 0.15
    scores = classification_metrics(y_test, result.predictions, num_classes=10)
    assert scores["accuracy"] == pytest.approx(result.accuracy)
    assert len(result.predictions) == len(test_idx)


def test_linear_probe_epoch_features_replace_the_train_features():
    x, y = _separable(seed=0)
    x_test, y_test = _separable(n_per_class=25, seed=1)
    base = linear_probe(x, y, x_test, y_test, epochs=5, batch_size=64, val_fraction=0.2)
    calls = []
    same = linear_probe(x, y, x_test, y_test, epochs=5, batch_size=64, val_fraction=0.2,
                        epoch_features=lambda epoch: calls.append(epoch) or x)
    assert calls == [1, 2, 3, 4, 5] and same.accuracy == base.accuracy
    torch.testing.assert_close(same.linear.weight, base.linear.weight)
    shifted = linear_probe(x, y, x_test, y_test, epochs=5, batch_size=64,
                           epoch_features=lambda epoch: x + torch.randn_like(x))
    assert not torch.equal(shifted.linear.weight, base.linear.weight)
    with pytest.raises(ValueError, match="epoch_features"):
        linear_probe(x, y, x_test, y_test, epochs=1, epoch_features=lambda epoch: x[:, :3])


def test_augmented_features_fresh_or_cycled():
    from ssltutor.data import augment

    backbone = _tiny_backbone()
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    views = augment.supervised_views(16, *augment.IMAGENET_STATS, scale=(0.08, 1.0))
    assert views.views[0].config.scale == (0.08, 1.0) and views.views[0].config.hflip_p == 0.5
    fresh = evaluate.augmented_features(backbone, images, views, seed=0)
    first, second = fresh(1), fresh(2)
    assert first.shape[0] == 6 and not torch.equal(first, second)
    cycled = evaluate.augmented_features(backbone, images, views, seed=0, copies=2)
    torch.testing.assert_close(cycled(1), first)  # same seed, same first draw
    assert torch.equal(cycled(3), cycled(1)) and not torch.equal(cycled(2), cycled(1))
    with pytest.raises(ValueError, match="copies"):
        evaluate.augmented_features(backbone, images, views, copies=0)
