"""Continual self-supervised learning: train on a sequence of tasks, probe after every task, score forgetting.

``fit_continual(method, tasks, train, test, epochs_per_task)`` trains ``method`` on each task's images in turn with
:func:`ssltutor.train.fit` (so the optimizer and the learning-rate schedule restart at every task, as in CaSSLe's
code, which starts a new Lightning trainer per task). A method with a ``start_task(t)`` hook (:class:`CaSSLe`) is
told when a task begins. After every task the frozen backbone is evaluated by a linear probe trained on the *whole*
labelled train set (all classes, CaSSLe's protocol) and scored on each task's test classes: that fills row ``i`` of the
accuracy matrix ``R[i, j]`` (accuracy on task ``j`` after training task ``i``). From ``R`` (0-based, ``T`` tasks):

* average accuracy   ``A = mean_j R[T-1, j]``                               (final accuracy, higher is better)
* forgetting         ``F = mean_{j<T-1} max_{i<T-1} (R[i, j] - R[T-1, j])``  (best earlier value minus final)
* backward transfer  ``BWT = mean_{j<T-1} (R[T-1, j] - R[j, j])``
* forward transfer   ``T = mean_{j>=1} (R[j-1, j] - b_j)``, ``b_j`` = the same probe on a *randomly initialised*
  backbone: how much training on earlier tasks already helps on task ``j`` before it is seen

(:func:`ssltutor.evaluate.continual_metrics` computes them.) Data-incremental tasks share every class, so there is no
per-task test split: each row of ``R`` then holds the overall test accuracy in every column, ``A`` is the final
accuracy and ``F`` the drop from the best earlier accuracy.

Checkpoints: with ``checkpoint_dir``, task ``t`` trains in ``checkpoint_dir/task_t`` (``fit``'s checkpoint and history,
so a task interrupted mid-way resumes mid-way) and ``continual.json`` records the rows of ``R`` measured so far;
``resume=True`` skips finished tasks, loads the method state of the last finished task and reaches the same numbers
as an uninterrupted run (bitwise on CPU with the same seed and thread count).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import augment
from ..data.splits import Task, class_incremental_tasks, data_incremental_tasks
from ..evaluate import AccuracyMatrix, augmented_features, continual_metrics, extract_features, linear_probe, task_accuracies
from ..methods.base import Method
from ..train import History, _atomic_write, fit, resolve_device
from .base import VariantRun, fit_options, seeded_backbone

STATE_NAME = "continual.json"

__all__ = ["PROTOCOLS", "make_tasks", "TaskEvaluation", "ContinualResult", "evaluate_backbone", "fit_continual",
           "fit_joint", "plot_cassle_diagram", "VARIANTS", "build_variant", "run_variant", "random_init_baseline",
           "initial_backbone", "probe_options"]

# How each dataset is cut into tasks: (scenario, default number of tasks). CIFAR as the paper's class-incremental
# CIFAR-100 (5 tasks); Intel Image's 6 scenes as 3 tasks of 2; APTOS's five grades are ordinal, not separable
# tasks, so it is data-incremental (random equal parts, the paper's ImageNet-100 data-incremental protocol).
PROTOCOLS = {"digits": ("class", 5), "cifar10": ("class", 5), "cifar100": ("class", 5), "intel_image": ("class", 3),
             "aptos2019": ("data", 4)}


def make_tasks(data, num_tasks: int | None = None, seed: int = 0, scenario: str | None = None) -> list[Task]:
    """Tasks for ``data`` (an ImageDataset) by its :data:`PROTOCOLS` entry; ``num_tasks``/``scenario`` ("class" or
    "data") override it. ``seed`` fixes the class order (or the random parts); keep it fixed across training seeds,
    as the paper does (one class order for all runs)."""
    default_scenario, default_tasks = PROTOCOLS.get(data.name, ("class", 5))
    scenario, num_tasks = scenario or default_scenario, num_tasks or default_tasks
    if scenario == "class":
        return class_incremental_tasks(data.labels, num_tasks, seed)
    if scenario == "data":
        return data_incremental_tasks(len(data), num_tasks, seed)
    raise ValueError(f"scenario must be 'class' or 'data', got {scenario!r}")


# ----------------------------------------------------------------------------------------------------------------
# One evaluation: a linear probe on all labelled train data, scored per task
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class TaskEvaluation:
    """per_task: accuracy on the test samples of each task's classes (data-incremental: the overall accuracy,
    repeated); overall: accuracy on the whole test set; both in [0, 1]."""

    per_task: list[float]
    overall: float


PROBE_AUGMENTS = ("none", "crop_flip")


def evaluate_backbone(backbone: nn.Module, train, test, tasks: Sequence[Task], *, transform=None, seed: int = 0,
                      device=None, augment_train: str = "none", augment_copies: int | None = None,
                      **probe_options) -> TaskEvaluation:
    """Linear probe of a frozen ``backbone``: trained on every labelled image of ``train`` (an ImageDataset), scored
    on ``test`` overall and per task (``tasks`` from :mod:`ssltutor.data.splits`).

    transform: uint8 -> normalised float input (default: ``eval_transform`` at the images' size with the dataset's
    statistics). probe_options: passed to :func:`ssltutor.evaluate.linear_probe` (epochs, optimizer, lr, schedule,
    ...; its defaults otherwise: Adam on standardised features, 100 epochs).
    augment_train: ``"none"`` (features of the clean train images) or ``"crop_flip"`` (CaSSLe's ``main_linear.py``:
    RandomResizedCrop(0.08-1) + horizontal flip, a new view every epoch, or ``augment_copies`` views reused in turn;
    :func:`ssltutor.evaluate.augmented_features`).
    """
    if augment_train not in PROBE_AUGMENTS:
        raise ValueError(f"augment_train must be one of {', '.join(PROBE_AUGMENTS)}, got {augment_train!r}")
    device = resolve_device(device)
    size, stats = train.images.shape[-1], augment.STATS.get(train.name, augment.IMAGENET_STATS)
    if transform is None:
        transform = augment.eval_transform(size, *stats)
    backbone = backbone.to(device)
    f_train = extract_features(backbone, train.images, transform, device=device)
    f_test = extract_features(backbone, test.images, transform, device=device)
    if augment_train == "crop_flip":
        views = augment.supervised_views(size, *stats, scale=(0.08, 1.0))
        probe_options["epoch_features"] = augmented_features(backbone, train.images, views, seed, augment_copies,
                                                             device=device)
    result = linear_probe(f_train, train.labels, f_test, test.labels, num_classes=len(train.classes), seed=seed,
                          **probe_options)
    predictions = result.predictions.cpu()
    if all(task.classes for task in tasks):
        per_task = task_accuracies(test.labels, predictions, [task.classes for task in tasks])
    else:  # data-incremental: every task holds every class, there is no per-task test split
        per_task = [result.accuracy] * len(tasks)
    return TaskEvaluation([float(a) for a in per_task], float(result.accuracy))


# ----------------------------------------------------------------------------------------------------------------
# The continual loop
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ContinualResult:
    """R: (T, T) accuracy matrix (every cell is measured: the probe scores all tasks after each task);
    overall: whole-test-set accuracy after each task; random_baseline: b_j of the random-init backbone (or None);
    metrics: :func:`continual_metrics` of R; histories: one ``fit`` History per task."""

    R: np.ndarray
    overall: list[float]
    random_baseline: list[float] | None
    tasks: list[Task]
    histories: list[History] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float | None]:
        return continual_metrics(self.R, self.random_baseline)

    def summary(self) -> dict[str, float | None]:
        """A, F, BWT, T (forward transfer) and the final overall accuracy, in [0, 1]."""
        m = self.metrics
        return {"A": m["average_accuracy"], "F": m["forgetting"], "BWT": m["backward_transfer"],
                "T": m["forward_transfer"], "final_accuracy": self.overall[-1]}

    def history(self) -> pd.DataFrame:
        """One row per task t (``epoch`` = t, from 1): ``acc_task<j>`` = R[t - 1, j - 1], the accuracy on task j
        after training task t, and ``overall``: the form ``metrics.json`` stores (``histories``) and
        :func:`ssltutor.results.accuracy_matrix` reads back."""
        T = len(self.R)
        frame = pd.DataFrame(self.R, columns=[f"acc_task{j + 1}" for j in range(T)])
        return frame.assign(overall=self.overall[:T]).rename_axis(None).assign(epoch=range(1, T + 1))

    def steps(self) -> pd.DataFrame:
        """All training steps of all tasks in one frame, with a ``task`` column."""
        frames = [h.steps.assign(task=t) for t, h in enumerate(self.histories) if len(h.steps)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _start_task(method: Method, task: int) -> None:
    if hasattr(method, "start_task"):
        method.start_task(task)


def _read_state(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(lambda f: f.write(json.dumps(state, indent=1)), path, text=True)


def _read_history(folder: Path) -> History:
    steps, epochs = folder / "history_steps.csv", folder / "history_epochs.csv"
    return History(pd.read_csv(steps) if steps.exists() else pd.DataFrame(),
                   pd.read_csv(epochs) if epochs.exists() else pd.DataFrame())


def fit_continual(method: Method, tasks: Sequence[Task], train, test, epochs_per_task: int, *, seed: int = 0,
                  device=None, checkpoint_dir: str | Path | None = None, resume: bool = False,
                  random_baseline: str | Sequence[float] | None = "probe", probe_options: dict | None = None,
                  transform=None, stop_after: int | None = None, progress: bool = False, **fit_options) -> ContinualResult:
    """Train ``method`` on ``tasks`` one after the other; probe the backbone after each; fill ``R``.

    Args:
        method: any Method (SSL, :class:`~ssltutor.methods.cassle.CaSSLe`, supervised). ``start_task(t)`` is called
            before task t when the method has it.
        tasks: from ``class_incremental_tasks`` or ``data_incremental_tasks`` on ``train.labels``.
        train, test: ImageDatasets; the method trains on ``train.subset(task.indices)``, the probe uses all of
            ``train`` with its labels (the paper's protocol) and scores ``test``.
        epochs_per_task: epochs over each task's images.
        seed: task t trains with ``fit(seed=seed + t)``; the probes use ``seed``.
        checkpoint_dir, resume: see the module docstring.
        random_baseline: ``"probe"`` probes a copy of the backbone before any training (b_j for forward transfer),
            a sequence gives b_j directly (e.g. shared between methods with the same initial backbone), None skips T.
        probe_options, transform: the linear probe (:func:`evaluate_backbone`), e.g. ``{"epochs": 100}``.
        stop_after: train only tasks ``0 .. stop_after - 1`` (then resume later); the result holds those rows.
        fit_options: passed to :func:`ssltutor.train.fit` (batch_size, lr, optimizer, precision, ...).
    Returns:
        :class:`ContinualResult`; rows of R not trained yet (``stop_after``) are NaN.
    """
    if epochs_per_task < 1:
        raise ValueError(f"epochs_per_task must be >= 1, got {epochs_per_task}")
    if not tasks:
        raise ValueError("tasks is empty: build them with class_incremental_tasks or data_incremental_tasks")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder holding continual.json and task_*/)")
    device = resolve_device(device)
    T = len(tasks)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    probe = dict(transform=transform, seed=seed, device=device, **(probe_options or {}))
    classes = [list(map(int, task.classes)) for task in tasks]

    state = _read_state(folder / STATE_NAME) if resume else None
    if state is not None and state["task_classes"] != classes:
        raise ValueError(f"{folder / STATE_NAME} was written for other tasks ({state['task_classes']}), not "
                         f"{classes}: use another checkpoint_dir or resume=False")
    if state is None:
        if isinstance(random_baseline, str):
            if random_baseline != "probe":
                raise ValueError(f"random_baseline must be 'probe', a sequence of accuracies or None, got {random_baseline!r}")
            random_baseline = evaluate_backbone(copy.deepcopy(method.backbone), train, test, tasks, **probe).per_task
        state = {"task_classes": classes, "tasks_done": 0, "rows": [], "overall": [],
                 "random_baseline": None if random_baseline is None else [float(b) for b in random_baseline]}
    histories: list[History] = []
    done = state["tasks_done"]
    if done:  # rebuild the structure of the last finished task, then load its weights
        _start_task(method, done - 1)
        last = torch.load(folder / f"task_{done - 1}" / "checkpoint.pt", map_location=device, weights_only=True)
        method.load_state_dict(last["method"])
        histories = [_read_history(folder / f"task_{t}") for t in range(done)]

    for t in range(done, T if stop_after is None else min(T, stop_after)):
        _start_task(method, t)
        task_dir = folder / f"task_{t}" if folder is not None else None
        history = fit(method, train.subset(tasks[t].indices), epochs=epochs_per_task, seed=seed + t, device=device,
                      checkpoint_dir=task_dir, resume=resume, progress=progress, **fit_options)
        histories.append(history)
        evaluation = evaluate_backbone(method.backbone, train, test, tasks, **probe)
        state["rows"].append(evaluation.per_task)
        state["overall"].append(evaluation.overall)
        state["tasks_done"] = t + 1
        if folder is not None:
            _write_state(folder / STATE_NAME, state)

    matrix = AccuracyMatrix(T)
    for i, row in enumerate(state["rows"]):
        matrix.record(i, row)
    return ContinualResult(matrix.values, list(state["overall"]), state["random_baseline"], list(tasks), histories)


def fit_joint(method: Method, train, test, tasks: Sequence[Task], epochs: int, *, seed: int = 0, device=None,
              probe_options: dict | None = None, transform=None, progress: bool = False, **fit_options) -> tuple[TaskEvaluation, History]:
    """Offline upper bound: train on all of ``train`` at once for ``epochs`` (``epochs_per_task`` gives the same
    number of gradient steps as the task sequence), then the same probe, scored per task."""
    history = fit(method, train, epochs=epochs, seed=seed, device=device, progress=progress, **fit_options)
    evaluation = evaluate_backbone(method.backbone, train, test, tasks, transform=transform, seed=seed, device=device,
                                   **(probe_options or {}))
    return evaluation, history


# ----------------------------------------------------------------------------------------------------------------
# Figure: the CaSSLe predictor idea
# ----------------------------------------------------------------------------------------------------------------
def plot_cassle_diagram(ax=None):
    """CaSSLe's training graph (after the first task): the current encoder and projector give ``z`` for a view,
    the frozen copy from the previous task gives ``zbar`` for the same view, and the predictor g must map ``z`` to
    ``zbar`` with the SSL method's own loss D. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        fig, ax = plt.subplots(figsize=(9.5, 3.8), layout="constrained")
    else:
        fig = ax.figure
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.2)
    ax.axis("off")

    def box(x, y, text, color, w=1.5, h=0.62):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="0.25"))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(x0, y0, x1, y1, style="-|>", color="0.2", ls="-"):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, mutation_scale=12, color=color, ls=ls))

    learn, frozen, loss = "#cfe3f7", "#dddddd", "#fbe0c4"
    box(0.8, 2.1, "view $x_A$\n(and $x_B$)", "white", w=1.2, h=0.8)
    box(2.8, 3.2, "encoder $f_t$", learn)
    box(4.7, 3.2, "projector $h_t$", learn)
    box(2.8, 1.0, "encoder $f_{t-1}$\n(frozen)", frozen)
    box(4.7, 1.0, "projector $h_{t-1}$\n(frozen)", frozen)
    box(6.6, 2.1, "predictor $g$\n(new)", learn)
    box(8.8, 3.2, "$L_{SSL}(z_A, z_B)$", loss, w=1.7)
    box(8.8, 1.0, r"$D(g(z_A), \bar z_A)$", loss, w=1.7)
    arrow(1.4, 2.3, 2.05, 3.1)
    arrow(1.4, 1.9, 2.05, 1.1)
    arrow(3.55, 3.2, 3.95, 3.2)
    arrow(3.55, 1.0, 3.95, 1.0)
    arrow(5.45, 3.2, 7.95, 3.2)
    ax.text(6.6, 3.35, "$z_A$", ha="center", fontsize=9)
    arrow(5.45, 3.05, 6.3, 2.4)
    arrow(6.9, 1.8, 7.95, 1.15)
    arrow(5.45, 1.0, 7.95, 1.0, color="0.45", ls="--")
    ax.text(6.6, 0.75, r"$\bar z_A$ (no gradient)", ha="center", fontsize=9, color="0.35")
    ax.text(5.0, 4.05, r"$L = L_{SSL} + \lambda \cdot \frac{1}{2}[D(g(z_A), \bar z_A) + D(g(z_B), \bar z_B)]$",
            ha="center", fontsize=10)
    ax.text(0.1, 0.1, "blue: trained, grey: frozen copy taken at the start of task t", fontsize=8, color="0.35")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# The variants the notebook compares, built from one preset dict (ssltutor.presets.preset(name, paper="cassle"))
# ----------------------------------------------------------------------------------------------------------------
VARIANTS = ("fine_tune", "cassle", "supervised", "joint")


def probe_options(settings: dict) -> dict:
    """The linear-probe settings of a preset dict."""
    return {"epochs": settings["probe_epochs"], "optimizer": settings["probe_optimizer"], "lr": settings["probe_lr"],
            "schedule": settings["probe_schedule"], "augment_train": settings["probe_augment"],
            "augment_copies": settings["probe_augment_copies"]}


def initial_backbone(settings: dict, seed: int):
    """The randomly initialised backbone every variant of run ``seed`` starts from (same seed, same weights)."""
    return seeded_backbone(settings, seed, stem_padding=settings["stem_padding"])


def build_variant(variant: str, settings: dict, ssl_method: str, dataset: str, num_classes: int, seed: int) -> Method:
    """``fine_tune``/``joint``: the plain SSL method; ``cassle``: it wrapped by CaSSLe; ``supervised``: cross-entropy."""
    from .. import methods

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    backbone = initial_backbone(settings, seed)
    size = settings["image_size"]
    if variant == "supervised":
        return methods.create("supervised", backbone, dataset=dataset, num_classes=num_classes, image_size=size)
    ssl_options = {"crop_scale": settings["crop_scale"], **settings["ssl_options"].get(ssl_method, {})}
    if variant == "cassle":
        return methods.create("cassle", backbone, dataset=dataset, ssl_method=ssl_method, ssl_options=ssl_options,
                              image_size=size, head_scale=settings["head_scale"], seed=seed,
                              distill_lambda=settings["distill_lambda"], pred_hidden=settings["pred_hidden"],
                              frozen_bn_train=settings["frozen_bn_train"], reset_predictor=settings["reset_predictor"])
    return methods.create(ssl_method, backbone, dataset=dataset, image_size=size, head_scale=settings["head_scale"],
                          **ssl_options)


def random_init_baseline(train, test, tasks: Sequence[Task], settings: dict, seed: int = 0, device=None) -> list[float]:
    """b_j: the linear probe of the untrained backbone of run ``seed``, per task (for forward transfer)."""
    return evaluate_backbone(initial_backbone(settings, seed), train, test, tasks, seed=seed, device=device,
                             **probe_options(settings)).per_task


def run_variant(variant: str, train, test, tasks: Sequence[Task], settings: dict, *, ssl_method: str = "simclr",
                seed: int = 0, device=None, random_baseline: Sequence[float] | str | None = "probe",
                checkpoint_dir: str | Path | None = None, resume: bool = False, progress: bool = False) -> VariantRun:
    """Train one variant on ``tasks`` with the preset ``settings`` and score it.

    Returns a :class:`~ssltutor.studies.base.VariantRun` with metrics A, F, BWT, T and final_accuracy in [0, 1]
    (the offline ``joint`` upper bound has only A and final_accuracy; its training sees all data, for
    ``epochs_per_task`` epochs, i.e. as many gradient steps as the sequence) and ``result`` the
    :class:`ContinualResult` (accuracy matrix ``R``, one History per task) or, for joint, the
    :class:`TaskEvaluation` (its ``history`` the one training run).
    """
    method = build_variant(variant, settings, ssl_method, train.name, len(train.classes), seed)
    name = "supervised" if variant == "supervised" else ssl_method
    common = dict(seed=seed, device=device, probe_options=probe_options(settings), progress=progress,
                  **fit_options(settings, name))
    start = time.perf_counter()
    if variant == "joint":
        evaluation, history = fit_joint(method, train, test, tasks, settings["epochs_per_task"], **common)
        A = float(np.mean(evaluation.per_task))
        metrics = {"A": A, "F": None, "BWT": None, "T": None, "final_accuracy": evaluation.overall}
        return VariantRun(variant, seed, method, metrics, history.epochs, time.perf_counter() - start, evaluation)
    result = fit_continual(method, tasks, train, test, settings["epochs_per_task"], random_baseline=random_baseline,
                           checkpoint_dir=checkpoint_dir, resume=resume, **common)
    return VariantRun(variant, seed, method, result.summary(), None, time.perf_counter() - start, result)
