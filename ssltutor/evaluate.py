"""Evaluation of frozen representations: features, kNN, linear probe, metrics, continual-learning scores.

Everything runs on the device the tensors live on and is written to be fast enough to call after every epoch
(kNN monitor) or after every task (continual learning).

Protocols implemented here
--------------------------
* **Weighted kNN** (Wu et al., 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination";
  the monitor used by lightly's and solo-learn's benchmarks): cosine similarity, the k nearest training samples
  vote for their label with weight ``exp(sim / T)``.
* **Linear probe** on frozen features (DoGo, arXiv 2104.09866: Adam, 15 % of the train set held out, test accuracy of
  the best epoch *by validation accuracy*; CaSSLe, arXiv 2112.04215: SGD with step decay at 60 % and 80 % of the
  epochs). Model selection never looks at the test split.
* **Classification metrics** (FKT, arXiv 2304.01354: accuracy, macro precision/recall; APTOS: quadratic kappa).
* **Continual learning** (CaSSLe, arXiv 2112.04215): accuracy matrix ``R[i, j]`` and the GEM metrics
  (Lopez-Paz & Ranzato, 2017) average accuracy, forgetting (Chaudhry et al., 2018), backward and forward transfer.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import extract_features
from .train import lr_at

__all__ = [
    "extract_features",
    "predict_labels",
    "knn_predict",
    "knn_accuracy",
    "ProbeResult",
    "linear_probe",
    "augmented_features",
    "classification_metrics",
    "task_accuracies",
    "AccuracyMatrix",
    "continual_metrics",
]


# ----------------------------------------------------------------------------------------------------------------
# Predictions of a classifier method
# ----------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_labels(method: nn.Module, images: Tensor, mode: str | None = None, batch_size: int = 512) -> Tensor:
    """Predicted classes (N,) on the CPU of uint8 ``images`` (N, 3, H, W) through ``method.eval_transform`` and
    ``method.predict``, in eval mode (restored afterwards). ``mode`` goes to ``method.predict`` (the inference
    rule of the joint-label methods; None: the method's default)."""
    device = next(method.parameters()).device
    was_training = method.training
    method.eval()
    try:
        out = []
        for start in range(0, len(images), batch_size):
            x = method.eval_transform(images[start : start + batch_size].to(device), None)
            scores = method.predict(x) if mode is None else method.predict(x, mode)
            out.append(scores.argmax(1).cpu())
    finally:
        method.train(was_training)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------------------
# Weighted kNN (Wu et al., 2018)
# ----------------------------------------------------------------------------------------------------------------
def _num_classes(labels: Tensor, num_classes: int | None) -> int:
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels contain negative values (-1 marks unlabelled samples): pass labelled data only")
    found = int(labels.max()) + 1 if labels.numel() else 0
    if num_classes is None:
        return found
    if num_classes < found:
        raise ValueError(f"num_classes={num_classes} but labels go up to {found - 1}")
    return num_classes


def _check_features(name: str, features: Tensor, labels: Tensor | None = None) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(features.shape)}")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(features)):
        raise ValueError(f"labels for {name} must be (N,) with N={len(features)}, got shape {tuple(labels.shape)}")


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Weighted k-nearest-neighbour classification with cosine similarity (Wu et al., 2018).

    For a test feature ``q`` with neighbours ``N_k(q)`` (the ``k`` training features of largest cosine
    similarity ``s_i``), the score of class ``c`` is ``sum_{i in N_k(q), y_i = c} exp(s_i / T)`` and the prediction
    is the class of largest score (ties: smallest class index).

    Args:
        train_features: ``(N, D)`` memory bank; L2-normalized here.
        train_labels: int ``(N,)`` in ``[0, C)``.
        test_features: ``(M, D)`` queries, on the same device.
        k: neighbours; capped at ``N``. 200 is the Wu et al. / lightly default.
        temperature: ``T`` of the vote weights (0.1 in Wu et al.).
        num_classes: ``C``; default ``max(train_labels) + 1``.
        chunk_size: test rows per similarity block (memory ``chunk_size x N``).

    Returns:
        int64 ``(M,)`` predicted classes on the device of the features.
    """
    _check_features("train_features", train_features, train_labels)
    _check_features("test_features", test_features)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature dims differ: train {train_features.shape[1]}, test {test_features.shape[1]}")
    if len(train_features) == 0:
        raise ValueError("train_features is empty: the kNN memory bank needs at least one sample")
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    num_classes = _num_classes(train_labels, num_classes)
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    bank_labels = train_labels.to(bank.device).long()
    predictions = []
    for start in range(0, len(test_features), chunk_size):
        queries = F.normalize(test_features[start : start + chunk_size].float(), dim=1)
        sim, index = (queries @ bank.T).topk(k, dim=1)  # (m, k)
        weights = (sim / temperature).exp()
        scores = torch.zeros(len(queries), num_classes, device=bank.device)
        scores.scatter_add_(1, bank_labels[index], weights)  # (m, C)
        predictions.append(scores.argmax(dim=1))
    if not predictions:
        return torch.empty(0, dtype=torch.long, device=bank.device)
    return torch.cat(predictions)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy in [0, 1] of :func:`knn_predict` on ``test_labels`` ``(M,)``."""
    _check_features("test_features", test_features, test_labels)
    predictions = knn_predict(train_features, train_labels, test_features, k, temperature, num_classes)
    return (predictions == test_labels.to(predictions.device)).float().mean().item()


# ----------------------------------------------------------------------------------------------------------------
# Linear probe
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """Outcome of :func:`linear_probe`.

    accuracy: test accuracy in [0, 1] of the selected epoch's classifier.
    predictions: int64 ``(M,)`` test predictions of that classifier.
    best_epoch: 1-based epoch selected by validation accuracy (the last epoch without validation data).
    val_accuracy: validation accuracy of the selected epoch (``None`` without validation data).
    history: one dict per epoch: ``epoch, loss`` (mean train loss), ``lr``, ``train_accuracy`` and, with validation
        data, ``val_accuracy``. Test numbers are deliberately absent: they are computed once, after selection.
    linear: the selected ``nn.Linear(D, C)``; it takes *raw* features (the standardization is folded into it).
    """

    accuracy: float
    predictions: Tensor
    best_epoch: int
    val_accuracy: float | None
    history: list[dict] = field(default_factory=list)
    linear: nn.Linear | None = None


_PROBE_DEFAULTS = {"adam": (1e-3, 1e-6), "sgd": (0.1, 0.0)}  # optimizer -> (lr, weight_decay)


def _holdout(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    from ssltutor.data.splits import stratified_split  # data layer, imported late: evaluate needs it only here

    train_idx, val_idx = stratified_split(labels.cpu(), val_fraction, seed)
    return train_idx.to(labels.device), val_idx.to(labels.device)


def _fold_standardization(linear: nn.Linear, mean: Tensor, std: Tensor) -> nn.Linear:
    """Return a Linear on raw features equal to ``linear((x - mean) / std)``."""
    folded = nn.Linear(linear.in_features, linear.out_features).to(linear.weight.device)
    with torch.no_grad():
        folded.weight.copy_(linear.weight / std)
        folded.bias.copy_(linear.bias - folded.weight @ mean)
    return folded


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float | None = None,
    optimizer: str = "adam",
    weight_decay: float | None = None,
    batch_size: int | None = 256,
    val_fraction: float = 0.0,
    val: tuple[Tensor, Tensor] | None = None,
    seed: int = 0,
    standardize: bool = True,
    schedule: str = "cosine",
    epoch_features: Callable[[int], Tensor] | None = None,
) -> ProbeResult:
    """Train a linear classifier on frozen features; select the epoch by validation accuracy; report test accuracy.

    Softmax regression ``logits = W x + b`` with cross-entropy, trained on the device of ``train_features``.
    With validation data (``val=(features, labels)`` or ``val_fraction`` > 0, a stratified hold-out of the train
    features as in DoGo's 15 %), the weights of the epoch with the highest validation accuracy (earliest on ties)
    are kept; without it, the last epoch. The test split is used exactly once, after training, so it never
    influences the selected model.

    Args:
        train_features: ``(N, D)`` frozen features; ``train_labels``: int ``(N,)`` in ``[0, C)``.
        test_features: ``(M, D)``; ``test_labels``: int ``(M,)``.
        num_classes: ``C``; default: the largest label seen + 1.
        epochs: passes over the training features (100 in DoGo and CaSSLe).
        lr: default 1e-3 for ``"adam"``, 0.1 for ``"sgd"`` (SGD uses momentum 0.9). The papers' values on raw,
            unstandardized features are DoGo Adam 3e-4 (batch 64) and CaSSLe SGD 1.0 (batch 256): see presets.
        optimizer: ``"adam"`` or ``"sgd"``.
        weight_decay: default 1e-6 for Adam (DoGo), 0 for SGD (CaSSLe).
        batch_size: minibatch size; ``None`` (or >= N) trains full-batch.
        val_fraction: share of the train features held out for selection (ignored when ``val`` is given).
        val: explicit validation ``(features (V, D), labels (V,))``.
        seed: initial weights, shuffling and the hold-out split.
        standardize: z-score features with the mean/std of the training part (makes one lr fit all backbones).
        schedule: ``"cosine"`` (per step, to 0), ``"step"`` (x0.1 at 60 % and 80 % of the epochs, CaSSLe) or
            ``"constant"``.
        epoch_features: ``epoch -> (N, D)`` features of augmented train images (the rows of ``train_features``,
            same order), used in place of ``train_features`` for that epoch's steps: a probe trained with data
            augmentation (CaSSLe's ``main_linear.py``). ``train_features`` (the clean images) still set the
            standardisation and the hold-out. See :func:`augmented_features`.

    Returns:
        :class:`ProbeResult`.
    """
    _check_features("train_features", train_features, train_labels)
    _check_features("test_features", test_features, test_labels)
    if optimizer not in _PROBE_DEFAULTS:
        raise ValueError(f"optimizer must be one of {sorted(_PROBE_DEFAULTS)}, got {optimizer!r}")
    if schedule not in ("cosine", "step", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'step' or 'constant', got {schedule!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    device = train_features.device
    x, y = train_features.float(), train_labels.to(device).long()
    train_idx = None
    if val is not None:
        x_val, y_val = val[0].to(device).float(), val[1].to(device).long()
        _check_features("val features", x_val, y_val)
    elif val_fraction > 0:
        train_idx, val_idx = _holdout(y, val_fraction, seed)
        x, y, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    else:
        x_val = y_val = None
    labels_seen = [y, test_labels] + ([y_val] if y_val is not None else [])
    num_classes = _num_classes(torch.cat([t.to(device).long() for t in labels_seen]), num_classes)

    if standardize:
        mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    else:
        mean, std = torch.zeros(x.shape[1], device=device), torch.ones(x.shape[1], device=device)
    x = (x - mean) / std
    x_val = (x_val - mean) / std if x_val is not None else None

    generator = torch.Generator(device=device).manual_seed(seed)
    linear = nn.Linear(x.shape[1], num_classes).to(device)
    with torch.no_grad():  # init from the seed on CPU: the same numbers on every device
        cpu_generator = torch.Generator().manual_seed(seed)
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=cpu_generator) * 0.01)
        linear.bias.zero_()
    lr_default, wd_default = _PROBE_DEFAULTS[optimizer]
    lr = lr_default if lr is None else lr
    weight_decay = wd_default if weight_decay is None else weight_decay
    if optimizer == "adam":
        opt = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(linear.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)

    n = len(x)
    batch_size = n if batch_size is None else min(batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch

    milestones = [round(0.6 * epochs) * steps_per_epoch, round(0.8 * epochs) * steps_per_epoch]

    def lr_now(step: int) -> float:  # the fit loop's schedule, without warmup
        return lr_at(step, total_steps, 0, lr, 0.0, schedule, milestones)

    history: list[dict] = []
    best_state, best_epoch, best_val = None, epochs, None
    step = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator, device=device) if batch_size < n else None
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        epoch_lr = lr_now(step)
        x_epoch = x if epoch_features is None else _epoch_rows(epoch_features(epoch), train_features, train_idx,
                                                                mean, std)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size] if order is not None else slice(None)
            logits = linear(x_epoch[index])
            loss = F.cross_entropy(logits, y[index])
            for group in opt.param_groups:
                group["lr"] = lr_now(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.detach() * len(logits)
            correct += (logits.detach().argmax(1) == y[index]).sum()
        record = {"epoch": epoch, "loss": loss_sum.item() / n, "lr": epoch_lr, "train_accuracy": correct.item() / n}
        if x_val is not None:
            with torch.no_grad():
                record["val_accuracy"] = (linear(x_val).argmax(1) == y_val).float().mean().item()
            if best_val is None or record["val_accuracy"] > best_val:
                best_val, best_epoch = record["val_accuracy"], epoch
                best_state = copy.deepcopy(linear.state_dict())
        history.append(record)

    if best_state is not None:
        linear.load_state_dict(best_state)
    linear = _fold_standardization(linear, mean, std).requires_grad_(False)
    with torch.no_grad():  # the only look at the test split
        predictions = linear(test_features.to(device).float()).argmax(1)
    accuracy = (predictions == test_labels.to(device)).float().mean().item() if len(predictions) else float("nan")
    return ProbeResult(accuracy, predictions, best_epoch, best_val, history, linear)


def _epoch_rows(features: Tensor, clean: Tensor, train_idx: Tensor | None, mean: Tensor, std: Tensor) -> Tensor:
    """One epoch's augmented features, checked against the clean ones, held-out rows dropped, standardised."""
    if features.shape != clean.shape:
        raise ValueError(f"epoch_features must return the shape of train_features {tuple(clean.shape)}, got "
                         f"{tuple(features.shape)}")
    features = features.to(mean.device).float()
    return ((features if train_idx is None else features[train_idx]) - mean) / std


def augmented_features(backbone: nn.Module, images: Tensor, views, seed: int = 0, copies: int | None = None,
                       batch_size: int = 512, device=None) -> Callable[[int], Tensor]:
    """An ``epoch_features`` for :func:`linear_probe`: ``epoch -> (N, D)`` features of ``views(images)`` (one
    augmented view per image, e.g. ``augment.supervised_views(size, *stats, scale=(0.08, 1.0))``: CaSSLe's
    RandomResizedCrop + flip) through the frozen ``backbone`` in eval mode.

    copies: None draws a fresh view of every image each epoch (the papers' probes; one forward pass over the train
    set per epoch); ``k`` draws k views once and cycles through them (k passes in all, k feature matrices kept)."""
    if copies is not None and copies < 1:
        raise ValueError(f"copies must be >= 1 or None (a fresh view every epoch), got {copies}")
    generator = torch.Generator().manual_seed(seed)
    cache: dict[int, Tensor] = {}

    def draw() -> Tensor:
        def transform(batch, _generator):
            return views(batch, generator)[0]
        return extract_features(backbone, images, transform, batch_size, device)

    def features(epoch: int) -> Tensor:
        if copies is None:
            return draw()
        key = (epoch - 1) % copies
        if key not in cache:
            cache[key] = draw()
        return cache[key]

    return features


# ----------------------------------------------------------------------------------------------------------------
# Classification metrics
# ----------------------------------------------------------------------------------------------------------------
def _as_numpy(values) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _class_range(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None) -> np.ndarray:
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must both be (N,), got {y_true.shape} and {y_pred.shape}")
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    return np.arange(num_classes)


def classification_metrics(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 and quadratic-weighted Cohen's kappa.

    Args:
        y_true, y_pred: int ``(N,)`` tensors or arrays in ``[0, C)``.
        num_classes: ``C``; classes absent from both arrays still count in the macro averages (as 0, sklearn's
            ``zero_division=0``). Default: largest label + 1.

    Returns:
        dict with ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro`` and ``kappa_quadratic``
        (the APTOS 2019 metric, ordinal labels; 1 = perfect agreement, 0 = chance). Kappa is 1.0 when every
        prediction is right even if a single class occurs (where sklearn's formula is 0/0).
    """
    from sklearn import metrics

    y_true, y_pred = _as_numpy(y_true).astype(np.int64), _as_numpy(y_pred).astype(np.int64)
    labels = _class_range(y_true, y_pred, num_classes)
    if len(y_true) == 0:
        raise ValueError("y_true is empty: no samples to score")
    prf = {
        name: float(fn(y_true, y_pred, labels=labels, average="macro", zero_division=0))
        for name, fn in [
            ("precision_macro", metrics.precision_score),
            ("recall_macro", metrics.recall_score),
            ("f1_macro", metrics.f1_score),
        ]
    }
    if np.array_equal(y_true, y_pred):
        kappa = 1.0
    else:
        kappa = float(metrics.cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic"))
    return {"accuracy": float(metrics.accuracy_score(y_true, y_pred)), **prf, "kappa_quadratic": kappa}


# ----------------------------------------------------------------------------------------------------------------
# Continual learning
# ----------------------------------------------------------------------------------------------------------------
def task_accuracies(y_true, y_pred, tasks_classes: Sequence[Sequence[int]]) -> list[float]:
    """Accuracy of one classifier restricted to the samples of each task.

    Args:
        y_true, y_pred: int ``(N,)`` (tensors or arrays); predictions may be any class (a single C-way head
            evaluated per task, as CaSSLe's ``val_acc1_task{i}``; no task-id masking).
        tasks_classes: the classes of each task, e.g. ``[task.classes for task in tasks]``.

    Returns:
        ``[accuracy on the samples whose true class is in tasks_classes[t] for t in range(T)]``, in [0, 1].
    """
    y_true, y_pred = _as_numpy(y_true), _as_numpy(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must both be (N,), got {y_true.shape} and {y_pred.shape}")
    result = []
    for t, classes in enumerate(tasks_classes):
        mask = np.isin(y_true, np.asarray(list(classes)))
        if not mask.any():
            raise ValueError(f"task {t} (classes {list(classes)}) has no samples in y_true")
        result.append(float((y_true[mask] == y_pred[mask]).mean()))
    return result


class AccuracyMatrix:
    """Accumulates ``R[i, j]`` = accuracy on task ``j`` after training task ``i`` (``T x T``, NaN = not measured).

    Usage::

        matrix = AccuracyMatrix(num_tasks=5)
        for i, task in enumerate(tasks):
            train_on(task)
            matrix.record(i, task_accuracies(y_test, probe(...).predictions.cpu(), [t.classes for t in tasks]))
        continual_metrics(matrix.values, random_baseline=b)
    """

    def __init__(self, num_tasks: int):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.values = np.full((num_tasks, num_tasks), np.nan)

    @property
    def num_tasks(self) -> int:
        return len(self.values)

    def record(self, after_task: int, accuracies: Sequence[float]) -> None:
        """Fill row ``after_task`` with the accuracies on every task (length T; NaN where not measured)."""
        if not 0 <= after_task < self.num_tasks:
            raise ValueError(f"after_task must be in [0, {self.num_tasks}), got {after_task}")
        row = np.asarray(accuracies, dtype=float)
        if row.shape != (self.num_tasks,):
            raise ValueError(f"expected {self.num_tasks} accuracies (one per task), got shape {row.shape}")
        self.values[after_task] = row

    @property
    def complete(self) -> bool:
        """True once every row has been recorded (lower triangle and diagonal measured)."""
        return bool(np.isfinite(self.values[np.tril_indices(self.num_tasks)]).all())

    def metrics(self, random_baseline=None) -> dict[str, float | None]:
        """:func:`continual_metrics` of the recorded matrix."""
        return continual_metrics(self.values, random_baseline)

    def __repr__(self) -> str:
        return f"AccuracyMatrix(num_tasks={self.num_tasks}, complete={self.complete})"


def continual_metrics(R, random_baseline=None) -> dict[str, float | None]:
    """GEM / Avalanche continual-learning metrics from an accuracy matrix.

    ``R[i, j]`` (0-based) is the accuracy on task ``j`` after training task ``i``; ``T`` tasks. Definitions
    (Lopez-Paz & Ranzato, 2017, "Gradient Episodic Memory"; forgetting as Chaudhry et al., 2018, used by CaSSLe
    and, as ``forgetting`` = ``-bwt`` per experience, by Avalanche):

    * ``average_accuracy`` = ``mean_j R[T-1, j]``: final accuracy averaged over all tasks (higher is better).
    * ``forgetting`` = ``mean_{j < T-1} max_{i < T-1} (R[i, j] - R[T-1, j])``: how far each old task fell from
      its best earlier value. Positive = forgetting, 0 = none, negative = every task improved at the end. The max
      runs over all earlier rows, including ``i < j`` (a linear probe of a self-supervised backbone can already
      score on a task before it is trained), as in the CaSSLe formula.
    * ``backward_transfer`` = ``mean_{j < T-1} (R[T-1, j] - R[j, j])``: effect of later tasks on earlier ones.
      Negative = forgetting, positive = later training helped.
    * ``forward_transfer`` = ``mean_{j >= 1} (R[j-1, j] - b_j)``: accuracy on a task *before* training it,
      compared with ``b_j``, the accuracy of a randomly initialised network (``random_baseline``). Positive =
      earlier tasks help. ``None`` without a baseline.

    ``forgetting`` and ``backward_transfer`` (and ``forward_transfer``) are ``None`` for a single task.

    Args:
        R: ``(T, T)`` array or tensor; the diagonal and lower triangle must be measured (finite); the upper
            triangle may be NaN except ``R[j-1, j]`` when ``random_baseline`` is given.
        random_baseline: ``b``: ``(T,)`` accuracies of a randomly initialised backbone per task, or one number.

    Returns:
        dict with ``average_accuracy``, ``forgetting``, ``backward_transfer``, ``forward_transfer``; values are in
        the units of ``R`` (fractions or percent).
    """
    R = _as_numpy(R).astype(float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"R must be a square (T, T) matrix with T >= 1, got shape {R.shape}")
    T = R.shape[0]
    if not np.isfinite(R[np.tril_indices(T)]).all():
        raise ValueError("R has NaN/inf on or below the diagonal: record the accuracy on every task after each task")
    last = R[T - 1]
    result: dict[str, float | None] = {"average_accuracy": float(last.mean())}
    if T > 1:
        old = np.arange(T - 1)
        result["forgetting"] = float((np.nanmax(R[: T - 1, : T - 1], axis=0) - last[old]).mean())  # NaN: not measured
        result["backward_transfer"] = float((last[old] - R[old, old]).mean())
    else:
        result["forgetting"] = result["backward_transfer"] = None
    result["forward_transfer"] = None
    if random_baseline is not None and T > 1:
        b = _as_numpy(random_baseline).astype(float)
        if b.ndim > 1 or b.size not in (1, T):
            raise ValueError(f"random_baseline must be one number or {T} accuracies (one per task), "
                             f"got shape {b.shape}")
        b = np.broadcast_to(b.reshape(-1), (T,))
        new = np.arange(1, T)
        before = R[new - 1, new]
        if not np.isfinite(before).all():
            raise ValueError("forward transfer needs R[j-1, j] (accuracy on task j before training it) for j >= 1")
        result["forward_transfer"] = float((before - b[new]).mean())
    return result


class KNNMonitor:
    """A ``fit`` callback: weighted-kNN accuracy of the method's backbone after every ``every`` epochs.

    train / test: ``ImageDataset``-like objects (uint8 ``images``, ``labels``); features go through the method's
    ``eval_transform`` (the normalisation it trains with). Returns ``{"knn_acc": ...}`` for the history row.
    """

    def __init__(self, train, test, k: int = 200, temperature: float = 0.1, every: int = 1, batch_size: int = 512):
        if every < 1:
            raise ValueError(f"every must be >= 1 epoch, got {every}")
        self.train, self.test = train, test
        self.k, self.temperature, self.every, self.batch_size = k, temperature, every, batch_size

    def __call__(self, state) -> dict[str, float] | None:
        if state.epoch % self.every:
            return None
        method = state.method
        transform = getattr(method, "eval_transform", None)
        f_train = extract_features(method.backbone, self.train.images, transform, self.batch_size)
        f_test = extract_features(method.backbone, self.test.images, transform, self.batch_size)
        num_classes = int(max(self.train.labels.max(), self.test.labels.max())) + 1
        acc = knn_accuracy(f_train, self.train.labels.to(f_train.device), f_test, self.test.labels.to(f_test.device),
                           k=self.k, temperature=self.temperature, num_classes=num_classes)
        return {"knn_acc": acc}
