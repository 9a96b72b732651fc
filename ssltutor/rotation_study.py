"""The EffSSL study (paper 002): each SSL method with and without the rotation task, at several epoch budgets.

* :func:`step_time_ratio`: what the auxiliary costs, one SSL+rotation training step over one base step (the
  two extra forwards and their backward); ``python -m ssltutor.bench step`` prints it.
* :class:`KnnMonitor`: a ``fit`` callback that scores the backbone with weighted kNN after every epoch.
* :func:`run_variant`: pretrain one method for one budget, with the kNN curve, the final linear probe, the
  rotation accuracy and the training wall time (evaluation excluded).
* :func:`run_study`: the grid base methods x {without, with rotation} x budgets x seeds, as a tidy DataFrame.

Notebook 04 calls these; the measurement script of the issue calls :func:`run_study` per dataset.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import pandas as pd
import torch

from .data import ImageDataset, labelled_fraction
from .evaluate import knn_accuracy, linear_probe
from .methods import Batch, Method, create
from .models import create_backbone
from .train import FitState, fit, make_optimizer, resolve_device

__all__ = ["variant_name", "build_method", "step_time_ratio", "KnnMonitor", "random_init_knn", "run_variant",
           "run_study", "summarize"]


def variant_name(base: str, rotation: bool) -> str:
    """``"simclr"`` or ``"simclr_rot"``: the registered method name of a variant."""
    return f"{base}_rot" if rotation else base


def build_method(base: str, rotation: bool, settings: dict, dataset: str | None = None, seed: int = 0,
                 **options) -> Method:
    """A fresh method from preset ``settings`` (backbone, width, head_scale, image_size); the backbone weights
    depend only on ``seed``, so a base run and its rotation twin start from the same backbone."""
    torch.manual_seed(seed)
    backbone = create_backbone(settings["backbone"], **({"width": settings["width"]} if settings.get("width") else {}))
    extra = dict(options)
    if base == "mocov2plus":  # the paper's 65,536-key queue is larger than our subsets
        extra.setdefault("queue_size", settings.get("moco_queue_size", 4096))
    if rotation:
        for key in ("rotation_weight", "rotated_views"):
            if key in settings:
                extra.setdefault(key, settings[key])
    return create(variant_name(base, rotation), backbone, dataset=dataset, image_size=settings["image_size"],
                  head_scale=settings["head_scale"], **extra)


# ------------------------------------------------------------------------------------------------------------------
# Cost of the auxiliary task
# ------------------------------------------------------------------------------------------------------------------
def _step_seconds(method: Method, images: torch.Tensor, precision: str, repeats: int, rounds: int, seed: int,
                  device: torch.device) -> float:
    """Best-of-``rounds`` mean time of one full training step (views, forward, backward, optimizer, EMA/queue)."""
    generator = torch.Generator(device).manual_seed(seed)
    opt = make_optimizer(method.parameter_groups(0.0), "sgd", lr=0.01)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    labels = torch.zeros(len(images), dtype=torch.long, device=device)

    def one_step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = method.step(Batch(images, labels, generator))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.on_step_end(0.5)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    method.train()
    for _ in range(2):  # warm-up: allocator, kernels, MoCo's queue
        one_step()
    best = float("inf")
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            one_step()
        sync()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def step_time_ratio(base_name: str = "simclr", backbone: str = "small_convnet", batch_size: int = 128,
                    image_size: int = 32, precision: str = "bf16", repeats: int = 5, rounds: int = 3,
                    width: int = 32, head_scale: float = 1 / 8, channels_last: bool = True, device=None,
                    seed: int = 0) -> dict:
    """Seconds per training step of ``<base_name>_rot`` over ``<base_name>`` on random uint8 images.

    Both methods start from the same backbone weights and see the same batch; the rounds of the two alternate so
    that a busy machine slows both alike, and each keeps its fastest round (timeit's rule). Returns
    ``{"base": name, "base_step_s", "rotation_step_s", "ratio"}``. EffSSL's extra cost is two more forwards and
    their backward through the backbone: about 2x for SimCLR/SwAV (2 -> 4 backbone passes with gradients), less
    for BYOL/MoCo whose target forwards are not repeated.
    """
    if repeats < 1 or rounds < 1:
        raise ValueError(f"repeats and rounds must be >= 1, got {repeats} and {rounds}")
    device = resolve_device(device)
    settings = dict(backbone=backbone, width=width if backbone == "small_convnet" else None, head_scale=head_scale,
                    image_size=image_size)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8,
                           generator=generator).to(device)
    methods = {}
    for rotation in (False, True):
        m = build_method(base_name, rotation, settings, seed=seed).to(device)
        if channels_last:
            m.to(memory_format=torch.channels_last)
            m.memory_format = torch.channels_last
        methods[rotation] = m
    best = {False: float("inf"), True: float("inf")}
    for _ in range(rounds):
        for rotation, m in methods.items():
            best[rotation] = min(best[rotation], _step_seconds(m, images, precision, repeats, 1, seed, device))
    return {"base": base_name, "base_step_s": best[False], "rotation_step_s": best[True],
            "ratio": best[True] / best[False]}


# ------------------------------------------------------------------------------------------------------------------
# Evaluation during and after training
# ------------------------------------------------------------------------------------------------------------------
class KnnMonitor:
    """A ``fit`` callback: after every ``every``-th epoch, ``{"knn": accuracy}`` of a weighted kNN (cosine,
    T = 0.1) whose memory bank is ``labelled`` and whose queries are ``test``. ``cpu_s`` accumulates the process
    CPU time it used, so that training cost can be reported without evaluation."""

    def __init__(self, labelled: ImageDataset, test: ImageDataset, k: int = 50, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.labelled, self.test, self.k, self.every = labelled, test, k, every
        self.cpu_s = 0.0

    def __call__(self, state: FitState) -> dict | None:
        if state.epoch % self.every:
            return None
        start = time.process_time()
        m = state.method
        accuracy = knn_accuracy(m.features(self.labelled.images), self.labelled.labels, m.features(self.test.images),
                                self.test.labels, k=self.k)
        self.cpu_s += time.process_time() - start
        return {"knn": accuracy}


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
                **options) -> dict:
    """Pretrain ``base`` (+ rotation) on ``train`` for ``epochs`` and evaluate.

    ``labelled``: the labelled images for kNN and the probe (default ``train``). ``settings``: a preset dict
    (``ssltutor.presets.preset("cpu", paper="rotation")``). Returns ``{"method", "history"`` (epochs DataFrame:
    loss, ssl, rot, rot_acc, time_s, knn), ``"knn"`` (last epoch), ``"probe"`` (linear probe accuracy or None),
    ``"rot_acc"`` (mean over the last epoch, None without rotation), ``"train_s"`` (training wall seconds,
    evaluation excluded), ``"cpu_s"`` (process CPU seconds of training: the fair cost on a shared machine)}.
    """
    labelled = train if labelled is None else labelled
    method = build_method(base, rotation, settings, dataset=train.name, seed=seed, **options)
    monitor = KnnMonitor(labelled, test, settings["knn_k"], settings.get("knn_every", 1))
    cpu_start = time.process_time()
    history = fit(method, train, epochs=epochs, batch_size=settings["batch_size"], optimizer=settings["optimizer"],
                  lr=settings["lr"], weight_decay=settings["weight_decay"],
                  warmup_epochs=min(settings["warmup_epochs"], epochs - 1), precision=settings["precision"],
                  channels_last=settings["channels_last"], device=device, seed=seed, progress=False,
                  callbacks=[monitor])
    cpu_s = time.process_time() - cpu_start - monitor.cpu_s
    epochs_df = history.epochs
    result = {"method": method, "history": epochs_df, "train_s": float(epochs_df["time_s"].sum()), "cpu_s": cpu_s,
              "knn": float(epochs_df["knn"].dropna().iloc[-1]) if "knn" in epochs_df else None,
              "rot_acc": float(epochs_df["rot_acc"].iloc[-1]) if "rot_acc" in epochs_df else None, "probe": None}
    if probe:
        f_train, f_test = method.features(labelled.images), method.features(test.images)
        result["probe"] = linear_probe(f_train, labelled.labels, f_test, test.labels, epochs=settings["probe_epochs"],
                                       seed=seed).accuracy
    return result


def run_study(train: ImageDataset, test: ImageDataset, settings: dict, base_methods: Sequence[str] = ("simclr",),
              budgets: Sequence[int] | None = None, seeds: Sequence[int] = (0,), device=None,
              label_fraction: float = 1.0, probe: bool = True, baseline: bool = True,
              on_result: Callable[[dict], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every base method with and without rotation, at every epoch budget (default ``settings["epoch_budgets"]``),
    for every seed.

    ``label_fraction``: share of the train labels kNN and the probe may use (class-balanced, per seed).
    ``baseline``: add a ``base="random_init"``, ``budget=0`` row per seed (:func:`random_init_knn`).
    Returns ``(runs, curves)``: ``runs`` one row per run (dataset, base, rotation, budget, seed, knn, probe,
    rot_acc, train_s); ``curves`` one row per run and epoch (the kNN curve, losses, time). ``on_result`` is called
    with each finished row (e.g. to log progress or save partial results).
    """
    budgets = tuple(settings["epoch_budgets"] if budgets is None else budgets)
    if not budgets or min(budgets) < 1:
        raise ValueError(f"budgets must be positive epoch counts, got {budgets}")
    rows, curves = [], []
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
                           "knn": out["knn"], "probe": out["probe"], "rot_acc": out["rot_acc"],
                           "train_s": out["train_s"], "cpu_s": out["cpu_s"]}
                    rows.append(row)
                    curve = out["history"].assign(**{k: row[k] for k in ("dataset", "base", "rotation", "budget",
                                                                        "seed")})
                    curves.append(curve)
                    if on_result is not None:
                        on_result(row)
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def summarize(runs: pd.DataFrame,
              metrics: Sequence[str] = ("knn", "probe", "rot_acc", "train_s", "cpu_s")) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, base, rotation, budget), plus the gain of rotation in kNN points."""
    keys = [k for k in ("dataset", "base", "budget", "rotation") if k in runs]
    present = [m for m in metrics if m in runs and runs[m].notna().any()]
    table = runs.groupby(keys)[present].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    return table.reset_index()
