"""Splits: stratification, labelled fractions, exact label noise, continual-learning tasks, determinism by seed."""
import pytest
import torch

from ssltutor.data import load
from ssltutor.data.splits import (
    Task,
    class_incremental_tasks,
    data_incremental_tasks,
    labelled_fraction,
    stratified_split,
    symmetric_label_noise,
)


def imbalanced_labels(n_per_class=(50, 120, 7, 300, 1, 33)) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(123))]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_stratified_split_is_disjoint_covering_and_stratified(fraction):
    labels = imbalanced_labels()
    train, val = stratified_split(labels, fraction, seed=0)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(labels)))
    assert torch.equal(val, val.sort().values) and torch.equal(train, train.sort().values)
    assert len(val) == int(torch.tensor(fraction * len(labels)).ceil())
    counts = torch.bincount(labels)
    val_counts = torch.bincount(labels[val], minlength=len(counts))
    assert ((val_counts - counts * fraction).abs() <= 1).all()


def test_stratified_split_on_real_labels_and_digits_sizes(shared_data):
    labels = load("cifar10", root=shared_data, split="train").labels
    train, val = stratified_split(labels, 0.1, seed=0)
    assert torch.bincount(labels[val]).tolist() == [30] * 10
    assert len(load("digits", split="train")) == 1347 and len(load("digits", split="test")) == 450


def test_stratified_split_is_deterministic_by_seed():
    labels = imbalanced_labels()
    a, b, c = (stratified_split(labels, 0.2, seed=s)[1] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(imbalanced_labels(), bad, seed=0)


def test_splits_reject_unlabelled():
    with pytest.raises(ValueError, match="negative"):
        stratified_split(torch.tensor([0, 1, -1, 1]), 0.5, seed=0)


def test_labelled_fraction_per_class_and_at_least_one():
    labels = imbalanced_labels()
    idx = labelled_fraction(labels, 0.1, seed=0)
    counts, picked = torch.bincount(labels), torch.bincount(labels[idx], minlength=6)
    assert (picked >= 1).all() and (picked <= counts).all()
    assert ((picked - counts * 0.1).abs() <= 1).all()
    assert torch.equal(idx, idx.unique())  # sorted, no repeats
    tiny = labelled_fraction(labels, 0.001, seed=0)
    assert torch.bincount(labels[tiny]).tolist() == [1] * 6
    assert torch.equal(labelled_fraction(labels, 1.0, seed=0), torch.arange(len(labels)))
    assert torch.equal(idx, labelled_fraction(labels, 0.1, seed=0))


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.45, 1.0])
def test_symmetric_label_noise_flips_exactly_to_other_classes(rate):
    labels = torch.arange(1000) % 10
    original = labels.clone()
    noisy = symmetric_label_noise(labels, rate, num_classes=10, seed=0)
    assert torch.equal(labels, original)  # input untouched
    assert int((noisy != labels).sum()) == round(rate * 1000)  # exact count, and no flipped label kept its class
    assert noisy.min() >= 0 and noisy.max() < 10
    if rate >= 0.45:
        flipped = noisy != labels
        offsets = (noisy[flipped] - labels[flipped]) % 10
        assert set(offsets.tolist()) == set(range(1, 10))  # every other class is reachable
    assert torch.equal(noisy, symmetric_label_noise(labels, rate, 10, seed=0))


def test_symmetric_label_noise_validates():
    with pytest.raises(ValueError, match="rate"):
        symmetric_label_noise(torch.zeros(5, dtype=torch.long), 1.5, 2, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        symmetric_label_noise(torch.tensor([0, 5]), 0.5, 3, seed=0)


def test_class_incremental_tasks_seeded_order_disjoint_and_covering():
    labels = torch.arange(600) % 10
    tasks = class_incremental_tasks(labels, num_tasks=5, seed=3)
    assert all(isinstance(t, Task) for t in tasks) and len(tasks) == 5
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    assert [c for t in tasks for c in t.classes] == order
    assert torch.equal(torch.cat([t.indices for t in tasks]).sort().values, torch.arange(600))
    for t in tasks:
        assert len(t.classes) == 2 and set(labels[t.indices].tolist()) == set(t.classes) and len(t) == 120
    again = class_incremental_tasks(labels, 5, seed=3)
    assert all(torch.equal(a.indices, b.indices) and a.classes == b.classes for a, b in zip(tasks, again))
    assert [t.classes for t in class_incremental_tasks(labels, 5, seed=4)] != [t.classes for t in tasks]


def test_class_incremental_tasks_with_class_order():
    labels = torch.arange(70) % 7
    tasks = class_incremental_tasks(labels, 3, seed=0, class_order=[[6, 0, 1], [2, 3], [4, 5]])
    assert [t.classes for t in tasks] == [[6, 0, 1], [2, 3], [4, 5]]
    assert [len(t) for t in tasks] == [30, 20, 20]
    flat = class_incremental_tasks(torch.arange(60) % 6, 3, seed=0, class_order=[5, 4, 3, 2, 1, 0])
    assert [t.classes for t in flat] == [[5, 4], [3, 2], [1, 0]]


@pytest.mark.parametrize("num_tasks, class_order, match", [
    (3, None, "evenly"),                        # 10 classes do not split into 3 equal tasks
    (2, [0, 1, 2, 3, 4, 5, 6, 7, 8, 8], "permutation"),
    (2, [[0, 1, 2], [3, 4, 5, 6, 7, 8]], "permutation"),
    (3, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], "num_tasks"),
    (0, None, "num_tasks"),
])
def test_class_incremental_tasks_validates(num_tasks, class_order, match):
    with pytest.raises(ValueError, match=match):
        class_incremental_tasks(torch.arange(100) % 10, num_tasks, seed=0, class_order=class_order)


def test_data_incremental_tasks_equal_parts_remainder_to_first():
    tasks = data_incremental_tasks(103, 4, seed=0)
    assert [len(t) for t in tasks] == [28, 25, 25, 25]
    assert torch.equal(torch.cat([t.indices for t in tasks]).sort().values, torch.arange(103))
    assert all(t.classes == [] for t in tasks)
    assert all(torch.equal(a.indices, b.indices) for a, b in zip(tasks, data_incremental_tasks(103, 4, seed=0)))
    assert not torch.equal(tasks[0].indices, data_incremental_tasks(103, 4, seed=1)[0].indices)
    with pytest.raises(ValueError, match="num_tasks"):
        data_incremental_tasks(3, 4, seed=0)
