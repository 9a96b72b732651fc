"""The EffSSL study (paper 002): each SSL method with and without the rotation task, at several epoch budgets.

* :func:`step_time_ratio`: what the auxiliary costs, one SSL+rotation training step over one base step (the
  two extra forwards and their backward); ``python -m ssltutor.bench step`` prints it.
* :class:`TimedKNNMonitor`: the kNN ``fit`` callback, with its own CPU time kept apart from training's.
* :func:`run_variant`: pretrain one method for one budget, with the kNN curve, the final linear probe, the
  rotation accuracy and the training wall time (evaluation excluded).
* :func:`run_study`: the grid base methods x {without, with rotation} x budgets x seeds, as a tidy DataFrame.
* :func:`rotation_accuracy_per_class`: where rotation is ill-posed (classes without a canonical "up").

Notebook 04 calls these; the measurement script of the issue calls :func:`run_study` per dataset.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd
import torch

from ..data import ImageDataset, labelled_fraction
from ..evaluate import KNNMonitor, knn_accuracy, linear_probe
from ..methods import Method, create
from ..methods.rotation import rotation_logits
from ..models import CONVNETS
from ..presets import RotationSettings, as_dict
from ..timing import check_clock, fastest_steps, random_images, training_step
from ..train import FitState, resolve_device
from .base import VariantRun, fit_options, fit_with_preset, seeded_backbone  # noqa: F401 (fit_options: API)
from .base import summarize as summarize_runs

__all__ = ["variant_name", "build_method", "fit_options", "step_time_ratio", "TimedKNNMonitor", "random_init_knn",
           "run_variant", "Study", "run_study", "rotation_accuracy_per_class", "summarize"]


def variant_name(base: str, rotation: bool) -> str:
    """``"simclr"`` or ``"simclr_rot"``: the registered method name of a variant."""
    return f"{base}_rot" if rotation else base


def build_method(base: str, rotation: bool, settings: dict, dataset: str | None = None, seed: int = 0,
                 **options) -> Method:
    """A fresh method from preset ``settings`` (backbone, width, head_scale, image_size, and the base method's
    ``method_options``, e.g. SwAV's multi-crop); the backbone weights depend only on ``seed``, so a base run and
    its rotation twin start from the same backbone."""
    backbone = seeded_backbone(settings, seed)
    extra = {**settings["method_options"].get(base, {}), **options}
    extra.setdefault("crop_scale", settings["crop_scale"])
    if base == "mocov2plus":  # the paper's 65,536-key queue is larger than our subsets
        extra.setdefault("queue_size", settings["moco_queue_size"])
    if rotation:
        for key in ("rotation_weight", "rotated_views"):
            extra.setdefault(key, settings[key])
    return create(variant_name(base, rotation), backbone, dataset=dataset, image_size=settings["image_size"],
                  head_scale=settings["head_scale"], **extra)


# ------------------------------------------------------------------------------------------------------------------
# Cost of the auxiliary task
# ------------------------------------------------------------------------------------------------------------------
def step_time_ratio(base_name: str = "simclr", backbone: str = "small_convnet", batch_size: int = 128,
                    image_size: int = 32, precision: str = "bf16", repeats: int = 5, rounds: int = 3,
                    width: int = 32, head_scale: float = 1 / 8, channels_last: bool = True, device=None,
                    seed: int = 0, clock: str = "wall") -> dict:
    """Seconds per training step of ``<base_name>_rot`` over ``<base_name>`` on random uint8 images.

    Both methods start from the same backbone weights and see the same batch; the rounds of the two alternate so
    that a busy machine slows both alike, and each keeps its fastest round (timeit's rule). Returns
    ``{"base": name, "base_step_s", "rotation_step_s", "ratio"}``. EffSSL's extra cost is two more forwards and
    their backward through the backbone: about 2x for SimCLR/SwAV (2 -> 4 backbone passes with gradients), less
    for BYOL/MoCo whose target forwards are not repeated.

    ``clock``: ``"wall"`` (what a user waits) or ``"cpu"`` (process CPU time: steadier on a shared CPU; CPU only).
    """
    if repeats < 1 or rounds < 1:
        raise ValueError(f"repeats and rounds must be >= 1, got {repeats} and {rounds}")
    device = resolve_device(device)
    check_clock(clock, device)
    settings = as_dict(RotationSettings(backbone=backbone, width=width if backbone in CONVNETS else None,
                                        head_scale=head_scale, image_size=image_size))
    images = random_images(batch_size, image_size, seed, device)
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    steps = {}
    for rotation in (False, True):
        m = build_method(base_name, rotation, settings, seed=seed).to(device)
        if channels_last:
            m.use_channels_last()
        steps[rotation] = training_step(m, images, labels, precision, device, seed)
    best = fastest_steps(steps, device, rounds, repeats, warmup=2, clock=clock)  # warm-up: also MoCo's queue
    return {"base": base_name, "base_step_s": best[False], "rotation_step_s": best[True],
            "ratio": best[True] / best[False]}


# ------------------------------------------------------------------------------------------------------------------
# Evaluation during and after training
# ------------------------------------------------------------------------------------------------------------------
class TimedKNNMonitor(KNNMonitor):
    """:class:`ssltutor.evaluate.KNNMonitor` (``{"knn_acc": ...}`` after every ``every``-th epoch) that also sums
    the process CPU time it spends in ``cpu_s``, so that training cost can be reported without evaluation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cpu_s = 0.0

    def __call__(self, state: FitState) -> dict | None:
        start = time.process_time()
        try:
            return super().__call__(state)
        finally:
            self.cpu_s += time.process_time() - start


def random_init_knn(train: ImageDataset, test: ImageDataset, settings: dict, seed: int = 0,
                    labelled: ImageDataset | None = None) -> float:
    """kNN accuracy of the untrained backbone (the floor every curve starts from; high on easy data such as
    digits, where random convolutional features already separate the classes)."""
    labelled = train if labelled is None else labelled
    method = build_method("simclr", False, settings, dataset=train.name, seed=seed)
    return knn_accuracy(method.features(labelled.images), labelled.labels, method.features(test.images),
                        test.labels, k=settings["knn_k"])


def run_variant(base: str, rotation: bool, train: ImageDataset, test: ImageDataset, epochs: int, settings: dict,
                seed: int = 0, device=None, labelled: ImageDataset | None = None, probe: bool = True,
                **options) -> VariantRun:
    """Pretrain ``base`` (+ rotation) on ``train`` for ``epochs`` and evaluate.

    ``labelled``: the labelled images for kNN and the probe (default ``train``). ``settings``: a preset dict
    (``ssltutor.presets.preset("cpu", paper="rotation")``). Returns a :class:`~ssltutor.studies.base.VariantRun`
    (variant ``"simclr"`` or ``"simclr_rot"``; history: loss, ssl, rot, rot_acc, time_s, knn_acc per epoch) with
    metrics ``knn`` (last epoch), ``probe`` (linear probe accuracy or None), ``rot_acc`` (mean over the last epoch,
    None without rotation), ``train_s`` (training wall seconds, evaluation excluded) and ``cpu_s`` (process CPU
    seconds of training: the fair cost on a shared machine).
    """
    labelled = train if labelled is None else labelled
    method = build_method(base, rotation, settings, dataset=train.name, seed=seed, **options)
    monitor = TimedKNNMonitor(labelled, test, k=settings["knn_k"], every=settings["knn_every"])
    cpu_start = time.process_time()
    history = fit_with_preset(method, train, settings, epochs=epochs, name=base, seed=seed, device=device,
                              callbacks=[monitor])
    cpu_s = time.process_time() - cpu_start - monitor.cpu_s
    epochs_df = history.epochs
    accuracy = None
    if probe:
        f_train, f_test = method.features(labelled.images), method.features(test.images)
        accuracy = linear_probe(f_train, labelled.labels, f_test, test.labels, epochs=settings["probe_epochs"],
                                seed=seed).accuracy
    train_s = float(epochs_df["time_s"].sum())
    metrics = {"knn": float(epochs_df["knn_acc"].dropna().iloc[-1]), "probe": accuracy,
               "rot_acc": float(epochs_df["rot_acc"].iloc[-1]) if "rot_acc" in epochs_df else None,
               "train_s": train_s, "cpu_s": cpu_s}
    return VariantRun(variant_name(base, rotation), seed, method, metrics, epochs_df, train_s)


@dataclass
class Study:
    """What :func:`run_study` returns. ``runs``: one row per run (dataset, base, rotation, budget, seed, knn,
    probe, rot_acc, train_s, cpu_s); ``curves``: one row per run and epoch (knn_acc, losses, rot_acc, ``time_s`` and
    its running sum ``train_time_s``); ``methods``: the trained methods by (base, rotation, budget, seed)."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    methods: dict = field(default_factory=dict)

    def histories(self, base: str, seed: int | None = None) -> dict[str, pd.DataFrame]:
        """``{"simclr, 6 ep": epochs, "simclr+rot, 6 ep": epochs, ...}`` for ``plots.plot_history``."""
        frame = self.curves[self.curves["base"] == base]
        if seed is not None:
            frame = frame[frame["seed"] == seed]
        out = {}
        for (budget, rot), group in frame.groupby(["budget", "rotation"], sort=True):
            curve = group.groupby("epoch").mean(numeric_only=True).dropna(axis=1, how="all")  # no rot_acc for base
            out[f"{base}{'+rot' if rot else ''}, {budget} ep"] = curve.reset_index()
        return out


def run_study(train: ImageDataset, test: ImageDataset, settings: dict, base_methods: Sequence[str] = ("simclr",),
              budgets: Sequence[int] | None = None, seeds: Sequence[int] = (0,), device=None,
              label_fraction: float = 1.0, probe: bool = True, baseline: bool = True,
              on_result: Callable[[dict], None] | None = None) -> Study:
    """Every base method with and without rotation, at every epoch budget (default ``settings["epoch_budgets"]``),
    for every seed; each (budget, seed) pair starts both variants from the same backbone weights.

    ``label_fraction``: share of the train labels kNN and the probe may use (class-balanced, per seed).
    ``baseline``: add a ``base="random_init"``, ``budget=0`` row per seed (:func:`random_init_knn`).
    ``on_result`` is called with each finished row (e.g. to log progress or save partial results).
    Returns a :class:`Study`.
    """
    budgets = tuple(settings["epoch_budgets"] if budgets is None else budgets)
    if not budgets or min(budgets) < 1:
        raise ValueError(f"budgets must be positive epoch counts, got {budgets}")
    study, rows, curves = Study(pd.DataFrame(), pd.DataFrame()), [], []
    for seed in seeds:
        labelled = train if label_fraction >= 1 else train.subset(labelled_fraction(train.labels, label_fraction, seed))
        if baseline:
            rows.append({"dataset": train.name, "base": "random_init", "rotation": False, "budget": 0, "seed": seed,
                         "knn": random_init_knn(train, test, settings, seed, labelled), "probe": None,
                         "rot_acc": None, "train_s": 0.0, "cpu_s": 0.0})
        for base in base_methods:
            for epochs in budgets:
                for rotation in (False, True):
                    out = run_variant(base, rotation, train, test, epochs, settings, seed, device, labelled, probe)
                    row = {"dataset": train.name, "base": base, "rotation": rotation, "budget": epochs, "seed": seed,
                           **out.metrics}
                    rows.append(row)
                    study.methods[(base, rotation, epochs, seed)] = out.method
                    history = out.history
                    curves.append(history.assign(train_time_s=history["time_s"].cumsum(),
                                                 **{k: row[k] for k in ("dataset", "base", "rotation", "budget",
                                                                        "seed")}))
                    if on_result is not None:
                        on_result(row)
    study.runs, study.curves = pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
    return study


@torch.no_grad()
def rotation_accuracy_per_class(method: Method, data: ImageDataset, batch_size: int = 512) -> pd.DataFrame:
    """How well a trained rotation head (``<base>_rot`` or ``rotnet``) recovers each of the four turns of the
    un-augmented images of ``data``, per class: one row per class with ``class``, ``rot_acc`` (chance 0.25) and
    ``count``. Low values flag classes that look alike under rotation (no canonical "up")."""
    if not hasattr(method, "rotation_head"):
        raise ValueError(f"{type(method).__name__} has no rotation head: pass a '<base>_rot' method or 'rotnet'")
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    correct = torch.zeros(len(data), device=device)
    try:
        for start in range(0, len(data), batch_size):
            x = method.eval_transform(data.images[start:start + batch_size].to(device), None)
            for k in range(4):
                turns = torch.full((len(x),), k, device=device)
                logits = rotation_logits(method.backbone, method.rotation_head, x, turns)
                correct[start:start + len(x)] += (logits.argmax(1) == turns).float() / 4
    finally:
        method.train(was_training)
    frame = pd.DataFrame({"label": data.labels.cpu().numpy(), "rot_acc": correct.cpu().numpy()})
    table = frame.groupby("label")["rot_acc"].agg(["mean", "count"]).reset_index()
    table["class"] = [data.classes[i] for i in table["label"]]
    return table.rename(columns={"mean": "rot_acc"})[["class", "rot_acc", "count"]]


def summarize(runs: pd.DataFrame,
              metrics: Sequence[str] = ("knn", "probe", "rot_acc", "train_s", "cpu_s")) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, base, budget, rotation), sorted by them
    (:func:`ssltutor.studies.base.summarize`)."""
    return summarize_runs(runs, ("dataset", "base", "budget", "rotation"), metrics, sort=True)
