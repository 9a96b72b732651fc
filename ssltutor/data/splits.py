"""Index splits of a labelled dataset: stratified hold-out, labelled fraction, label noise, continual-learning tasks.

Every function takes a ``seed`` and draws its randomness from its own ``torch.Generator`` seeded with it, so the
same seed gives the same indices on every machine and never touches the global RNG. Indices are returned as
sorted ``LongTensor``s, ready for ``ImageDataset.subset``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "Task",
    "stratified_split",
    "labelled_fraction",
    "symmetric_label_noise",
    "class_incremental_tasks",
    "data_incremental_tasks",
]


@dataclass
class Task:
    """One step of a continual-learning sequence.

    classes: the class ids introduced by this task, in class-order (empty for data-incremental tasks, where every
        task may hold every class).
    indices: (n,) int64, sorted indices of the samples that belong to the task.
    """

    classes: list[int]
    indices: Tensor

    def __len__(self) -> int:
        return len(self.indices)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check_labels(labels: Tensor) -> Tensor:
    """Return labels as a 1-D int64 CPU tensor; raise if any is negative (unlabelled)."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)} dtype {labels.dtype}")
    labels = labels.long().cpu()
    if len(labels) and int(labels.min()) < 0:
        raise ValueError("labels contain negative values (unlabelled samples); pass only labelled samples")
    return labels


def _check_fraction(name: str, value: float, allow_one: bool = False) -> None:
    upper_ok = value <= 1 if allow_one else value < 1
    if not (0 < value and upper_ok):
        allowed = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"{name} must be in {allowed}, got {value}")


def _allocate(counts: Tensor, total: int) -> Tensor:
    """Split ``total`` over classes proportionally to ``counts`` (largest-remainder rounding), so the sum is exact.

    counts: (C,) int64 samples per class. Returns (C,) int64 with 0 <= result <= counts and result.sum() == total.
    Ties in the fractional parts go to the lower class id, which keeps the result deterministic.
    """
    quota = counts.double() * total / counts.sum()
    base = quota.floor().long()
    remainder = total - int(base.sum())
    if remainder > 0:
        order = torch.argsort(-(quota - base), stable=True)
        base[order[:remainder]] += 1
    return base


def _per_class_pick(labels: Tensor, per_class: Tensor, generator: torch.Generator) -> Tensor:
    """Pick ``per_class[c]`` random samples of every class c. Returns sorted int64 indices."""
    picked = []
    for c in range(len(per_class)):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[: int(per_class[c])]])
    return torch.cat(picked).sort().values if picked else torch.empty(0, dtype=torch.long)


def stratified_split(labels: Tensor, val_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split indices into train and validation with the same class proportions in both.

    labels: (N,) int64 class ids >= 0. val_fraction in (0, 1).
    The validation set holds exactly ``ceil(val_fraction * N)`` samples (the rounding scikit-learn's
    ``train_test_split`` uses), spread over classes by largest-remainder rounding of their shares.
    Returns (train_idx, val_idx): disjoint, sorted int64 tensors that together cover range(N).
    """
    labels = _check_labels(labels)
    _check_fraction("val_fraction", val_fraction)
    counts = torch.bincount(labels)
    n_val = min(math.ceil(val_fraction * len(labels) - 1e-9), len(labels))
    val_idx = _per_class_pick(labels, _allocate(counts, n_val), _generator(seed))
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    return torch.nonzero(keep).flatten(), val_idx


def labelled_fraction(labels: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Indices of a class-balanced labelled subset (semi-supervised protocols: 1 %, 10 % of the labels).

    labels: (N,) int64. fraction in (0, 1]. About ``round(fraction * N)`` samples, stratified by class, and at
    least one sample of every class that occurs in ``labels``. Returns sorted int64 indices.
    """
    labels = _check_labels(labels)
    _check_fraction("fraction", fraction, allow_one=True)
    counts = torch.bincount(labels)
    per_class = _allocate(counts, round(fraction * len(labels)))
    per_class = torch.where(counts > 0, per_class.clamp(min=1), per_class)
    return _per_class_pick(labels, per_class, _generator(seed))


def symmetric_label_noise(labels: Tensor, rate: float, num_classes: int, seed: int = 0) -> Tensor:
    """Corrupt labels with symmetric noise: exactly ``round(rate * N)`` labels move to a different class.

    labels: (N,) int64 in [0, num_classes). rate in [0, 1].
    The flipped samples are drawn uniformly without replacement; each gets a new class drawn uniformly from the
    ``num_classes - 1`` other classes (so no flipped label keeps its value, unlike the variant that draws from all
    classes). Returns a new (N,) int64 tensor; ``labels`` is not modified.
    """
    labels = _check_labels(labels)
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if len(labels) and int(labels.max()) >= num_classes:
        raise ValueError(f"labels go up to {int(labels.max())} but num_classes is {num_classes}")
    n_flip = round(rate * len(labels))
    if n_flip and num_classes < 2:
        raise ValueError(f"label noise needs num_classes >= 2, got {num_classes}")
    generator = _generator(seed)
    flip = torch.randperm(len(labels), generator=generator)[:n_flip]
    # Adding an offset in 1..C-1 modulo C gives every other class the same probability.
    offset = torch.randint(1, max(num_classes, 2), (n_flip,), generator=generator)
    noisy = labels.clone()
    noisy[flip] = (labels[flip] + offset) % num_classes
    return noisy


def _task_indices(labels: Tensor, classes: Sequence[int]) -> Tensor:
    return torch.nonzero(torch.isin(labels, torch.as_tensor(list(classes), dtype=torch.long))).flatten()


def _class_groups(num_classes: int, num_tasks: int, seed: int, class_order) -> list[list[int]]:
    """Resolve the classes of every task: a seeded shuffle, a flat order, or explicit per-task lists."""
    if class_order is None:
        if num_classes % num_tasks:
            raise ValueError(
                f"{num_classes} classes cannot be split evenly into {num_tasks} tasks; choose num_tasks dividing "
                f"{num_classes}, or pass class_order as a list of per-task class lists"
            )
        order = torch.randperm(num_classes, generator=_generator(seed)).tolist()
        size = num_classes // num_tasks
        return [order[t * size : (t + 1) * size] for t in range(num_tasks)]
    order = list(class_order)
    nested = len(order) > 0 and all(isinstance(group, (list, tuple)) for group in order)
    if nested:
        groups = [[int(c) for c in group] for group in order]
        if len(groups) != num_tasks:
            raise ValueError(f"class_order has {len(groups)} task lists but num_tasks is {num_tasks}")
        if any(len(group) == 0 for group in groups):
            raise ValueError("class_order contains an empty task list; every task needs at least one class")
    else:
        flat = [int(c) for c in order]
        if num_classes % num_tasks:
            raise ValueError(
                f"a flat class_order of {num_classes} classes cannot be cut into {num_tasks} equal tasks; "
                "pass a list of per-task class lists for uneven tasks"
            )
        size = len(flat) // num_tasks
        groups = [flat[t * size : (t + 1) * size] for t in range(num_tasks)]
    flat = sorted(c for group in groups for c in group)
    if flat != list(range(num_classes)):
        raise ValueError(
            f"class_order must be a permutation of 0..{num_classes - 1} (every class exactly once), got {class_order}"
        )
    return groups


def class_incremental_tasks(labels: Tensor, num_tasks: int, seed: int = 0, class_order=None) -> list[Task]:
    """Split a dataset into class-incremental tasks with disjoint classes (Avalanche's ``nc_benchmark`` protocol).

    labels: (N,) int64 in [0, C) with C = labels.max() + 1.
    Without ``class_order`` the classes are shuffled with ``torch.randperm(C)`` seeded by ``seed`` and cut into
    ``num_tasks`` equal chunks (C must be divisible by num_tasks). ``class_order`` may be a flat permutation of
    range(C) (cut into equal chunks, seed unused) or a list of per-task class lists (uneven tasks allowed).
    Returns ``num_tasks`` Tasks; their indices are disjoint and cover every sample.
    """
    labels = _check_labels(labels)
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    if num_classes < num_tasks:
        raise ValueError(f"cannot make {num_tasks} class-incremental tasks from {num_classes} classes")
    groups = _class_groups(num_classes, num_tasks, seed, class_order)
    return [Task(classes=group, indices=_task_indices(labels, group)) for group in groups]


def data_incremental_tasks(num_samples: int, num_tasks: int, seed: int = 0) -> list[Task]:
    """Split ``range(num_samples)`` into ``num_tasks`` random, disjoint, equal parts (data-incremental protocol).

    Every task gets ``num_samples // num_tasks`` samples; the remainder goes to task 0. ``Task.classes`` is empty
    because every task may hold every class. Returns Tasks with sorted int64 indices covering range(num_samples).
    """
    if num_tasks < 1 or num_tasks > num_samples:
        raise ValueError(f"num_tasks must be in [1, num_samples={num_samples}], got {num_tasks}")
    order = torch.randperm(num_samples, generator=_generator(seed))
    size, remainder = divmod(num_samples, num_tasks)
    bounds = [0, size + remainder] + [size + remainder + size * t for t in range(1, num_tasks)]
    return [Task(classes=[], indices=order[bounds[t] : bounds[t + 1]].sort().values) for t in range(num_tasks)]
