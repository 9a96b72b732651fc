"""The FKT study (Chhipa et al., ICIP 2023, arXiv 2304.01354): supervised only, representational transfer (SimCLR,
then fine-tuning) and functional transfer (:class:`ssltutor.methods.fkt.FKT`), all three through the same code path
(``ssltutor.train.fit``) and the same model selection (:class:`BestEpoch` on a validation split carved from train;
the released code selects on the test split, offered here as ``select_on="test"``):

>>> data = load_splits("intel_image", root="/data", settings=preset("cpu", paper="fkt"), seed=0)
>>> results = compare(data, settings=preset("cpu", paper="fkt"), seed=0)       # {"supervised", "rt", "fkt"}
>>> metrics_frame(results)                                                       # accuracy, macro P/R, kappa
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ..data import SPLITS, ImageDataset, augment, labelled_fraction, load, stratified_split
from ..evaluate import classification_metrics, extract_features
from ..methods import Method, Supervised
from ..methods.fkt import (CLASSIFIER_INPUTS, FKT, PROJECTOR_REFERENCE, SIMILARITIES, FullPrecisionViews,  # noqa: F401
                           check_choice, fkt_projector, fkt_simclr, fkt_view_pipeline)
from ..models import Backbone, mlp
from ..presets import preset
from .base import VariantRun, cap, fit_with_preset, seeded_backbone

VARIANTS = ("supervised", "rt", "fkt")
VARIANT_NAMES = {"supervised": "supervised only", "rt": "representational transfer (SimCLR -> fine-tune)",
                 "fkt": "functional transfer (FKT)"}
SELECT_ON = ("val", "test")
STATS_CHOICES = ("dataset", "fkt_code")


# ----------------------------------------------------------------------------------------------------------------
# Data: train / val / test, model selection
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Splits:
    """train: what the variants learn from; val: model selection (carved from train, or the dataset's own
    ``val`` split where it has one: APTOS); test: scored once, after selection."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


def carve_val(train: ImageDataset, val_fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """A stratified validation split of ``train`` (disjoint; ``ssltutor.data.stratified_split``)."""
    keep, val = stratified_split(train.labels, val_fraction, seed)
    return train.subset(keep), train.subset(val)


def load_splits(dataset: str, root=None, settings: dict | None = None, seed: int = 0) -> Splits:
    """Train / val / test of ``dataset`` at ``settings["image_size"]``. The train split is capped at
    ``max_train`` (stratified, seeded) first, then the validation split (``val_fraction``) is carved from it, unless
    the dataset ships one (APTOS: our fixed 70/10/20 split of train.csv). ``max_test`` caps the test split."""
    settings = settings or preset("cpu", paper="fkt")
    size = settings["image_size"]
    train = cap(load(dataset, root=root, split="train", size=size), settings["max_train"], seed)
    test = cap(load(dataset, root=root, split="test", size=size), settings["max_test"], seed)
    if "val" in SPLITS[dataset]:
        return Splits(train, load(dataset, root=root, split="val", size=size), test)
    train, val = carve_val(train, settings["val_fraction"], seed)
    return Splits(train, val, test)


def predict_labels(method: Method, images: torch.Tensor, transform, device=None, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes ``(N,)`` (CPU int64) of ``method.classifier(method.backbone(x))`` in eval mode."""
    model = nn.Sequential(method.backbone, method.classifier)
    return extract_features(model, images, transform, batch_size, device).argmax(1).cpu()


class BestEpoch:
    """A ``fit`` callback: after every epoch, score the method on ``data`` (accuracy, logged as ``<name>_acc``)
    and, if ``keep``, keep a copy of the weights of the best epoch so far (ties: the earlier epoch).

    ``restore(method)`` loads the kept weights back."""

    def __init__(self, data: ImageDataset, transform, name: str = "val", keep: bool = True):
        self.data, self.transform, self.name, self.keep = data, transform, name, keep
        self.best_acc, self.best_epoch, self.best_state = -math.inf, 0, None

    def __call__(self, state) -> dict[str, float]:
        pred = predict_labels(state.method, self.data.images, self.transform, state.device)
        acc = (pred == self.data.labels.cpu()).sum().item() / len(pred)  # float64, as classification_metrics
        if self.keep and acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, state.epoch
            self.best_state = {k: v.detach().clone() for k, v in state.method.state_dict().items()}
        return {f"{self.name}_acc": acc}

    def restore(self, method: Method) -> None:
        if self.best_state is None:
            raise RuntimeError("no epoch was scored: pass this BestEpoch to fit(callbacks=[...]) first")
        method.load_state_dict(self.best_state)


def score(method: Method, data: ImageDataset, transform, device=None) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 and quadratic kappa of ``method`` on ``data``."""
    pred = predict_labels(method, data.images, transform, device)
    return classification_metrics(data.labels.cpu(), pred, num_classes=data.num_classes)


# ----------------------------------------------------------------------------------------------------------------
# The three variants through one code path
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class FKTRun(VariantRun):
    """One trained variant (:class:`~ssltutor.studies.base.VariantRun`): ``method`` holds the selected weights;
    ``metrics`` are on the test split; ``history`` has one row per epoch (loss terms, ``val_acc``, ``test_acc`` if
    monitored); for RT it is the fine-tuning stage and ``pretrain_history`` the SimCLR stage. ``best_epoch``: the
    selected epoch, chosen on ``select_on``; ``steps``: one row per training step."""

    best_epoch: int = 0
    steps: pd.DataFrame | None = None
    select_on: str = "val"
    pretrain_history: pd.DataFrame | None = None


def data_stats(dataset: str, settings: dict):
    """The (mean, std) the views use: the dataset's (``stats="dataset"``) or the code's fundus values."""
    check_choice("stats", settings["stats"], STATS_CHOICES)
    if settings["stats"] == "fkt_code":
        return augment.FKT_CODE_STATS
    return augment.STATS.get(dataset, augment.IMAGENET_STATS)


def make_backbone(settings: dict, seed: int) -> Backbone:
    """The preset's backbone, initialised from ``seed`` (so every variant starts from the same weights)."""
    # the 3x3 stem only for small images (the convnets have no other)
    return seeded_backbone(settings, seed, cifar_stem=settings["image_size"] <= 64,
                           pretrained=settings["pretrained"])


def _fit(method: Method, train: ImageDataset, settings: dict, stage: str, seed: int, device, callbacks=(),
         progress: bool = False, batch_size: int | None = None):
    """``ssltutor.train.fit`` with the preset's values for ``stage`` ("" = joint/supervised, "pretrain_",
    "finetune_"): ``<stage>epochs``, ``<stage>lr``, ``<stage>optimizer``, ``<stage>optimizer_options``,
    ``<stage>weight_decay``, ``<stage>exclude_bias_norm``, ... fall back to the plain keys."""
    epochs = (stage and settings[stage + "epochs"]) or settings["epochs"]
    return fit_with_preset(method, train, settings, epochs=epochs, stage=stage, seed=seed, device=device,
                           progress=progress, callbacks=callbacks, batch_size=batch_size)


def fine_tune(backbone: Backbone, train: ImageDataset, val: ImageDataset, num_classes: int, settings: dict, *,
              stats, seed: int = 0, device=None, callbacks=(), progress: bool = False,
              batch_size: int | None = None) -> tuple[Supervised, BestEpoch, object]:
    """Full fine-tuning (all weights trainable) with the code's MLP head Linear(D, D) -> ReLU -> Linear(D, C),
    on clean images (``src/finetune.py``: Resize + CenterCrop, no augmentation), selecting the best epoch on
    ``val``. Returns (method with the best weights, the BestEpoch callback, fit's History)."""
    method = Supervised(backbone, num_classes, image_size=settings["image_size"], stats=stats,
                        augment_views=settings["finetune_augment"])
    method.classifier = mlp([backbone.feature_dim, backbone.feature_dim, num_classes], batch_norm=False)
    best = BestEpoch(val, augment.eval_transform(settings["image_size"], *stats))
    history = _fit(method, train, settings, "finetune_", seed, device, [best, *callbacks], progress, batch_size)
    best.restore(method)
    return method, best, history


def build_method(variant: str, backbone: Backbone, num_classes: int, settings: dict, stats, **options) -> Method:
    """The method trained in the (last) stage of ``variant``; ``options`` override FKT's preset options."""
    check_choice("variant", variant, VARIANTS)
    size = settings["image_size"]
    if variant == "fkt":
        kw = dict(ssl_weight=settings["ssl_weight"], temperature=settings["temperature"],
                  similarity=settings["similarity"], classifier_input=settings["classifier_input"],
                  color_jitter=settings["color_jitter"], hflip=settings["hflip"])
        kw.update(options)
        return FKT(backbone, num_classes, image_size=size, stats=stats, **kw)
    if options:
        raise ValueError(f"options {sorted(options)} apply to variant 'fkt' only")
    if variant == "supervised":
        return Supervised(backbone, num_classes, image_size=size, stats=stats,
                          augment_views=settings["supervised_augment"])
    # RT's first stage: FKT's own SimCLR branch (views, projector and NT-Xent settings), so only the schedule differs.
    return fkt_simclr(backbone, size, stats, settings["temperature"], settings["similarity"],
                      color_jitter=settings["color_jitter"], hflip=settings["hflip"])


def run_variant(variant: str, data: Splits, settings: dict, *, dataset: str | None = None, seed: int = 0,
                device=None, select_on: str = "val", monitor_test: bool = False, progress: bool = False,
                batch_size: int | None = None, **options) -> FKTRun:
    """Train one variant on ``data.train`` from a backbone seeded by ``seed``, keep the epoch with the best
    accuracy on ``data.val`` (``select_on="test"``: on ``data.test``, the released code's protocol, which
    inflates the reported number), then score it on ``data.test``.

    monitor_test: also log test accuracy every epoch (never used for selection; for the inflation plot).
    options: FKT options (``ssl_weight``, ``similarity``, ...), overriding the preset."""
    check_choice("variant", variant, VARIANTS)
    check_choice("select_on", select_on, SELECT_ON)
    t0 = time.perf_counter()
    dataset = dataset or data.train.name
    stats = data_stats(dataset, settings)
    transform = augment.eval_transform(settings["image_size"], *stats)
    selection = data.val if select_on == "val" else data.test
    watchers = [BestEpoch(data.test, transform, name="test", keep=False)] if monitor_test and select_on == "val" else []
    backbone = make_backbone(settings, seed)
    method = build_method(variant, backbone, data.num_classes, settings, stats, **options)
    pretrain_history = None
    if variant == "rt":
        pretrain = _fit(method, data.train, settings, "pretrain_", seed, device, (), progress, batch_size)
        pretrain_history = pretrain.epochs
        method, best, history = fine_tune(backbone, data.train, selection, data.num_classes, settings, stats=stats,
                                          seed=seed, device=device, callbacks=watchers, progress=progress,
                                          batch_size=batch_size)
    else:
        best = BestEpoch(selection, transform)
        history = _fit(method, data.train, settings, "", seed, device, [best, *watchers], progress, batch_size)
        best.restore(method)
    epochs = history.epochs.rename(columns={"val_acc": f"{select_on}_acc"}) if select_on == "test" else history.epochs
    return FKTRun(variant, seed, method, score(method, data.test, transform), epochs, time.perf_counter() - t0,
                  best_epoch=best.best_epoch, steps=history.steps, select_on=select_on,
                  pretrain_history=pretrain_history)


def compare(data: Splits, settings: dict, *, variants: Sequence[str] = VARIANTS, **kwargs) -> dict[str, FKTRun]:
    """:func:`run_variant` for each of ``variants`` with the same data, seed and selection rule."""
    return {v: run_variant(v, data, settings, **kwargs) for v in variants}


def fraction_sweep(data: Splits, settings: dict, fractions: Sequence[float] = (0.1, 0.25, 1.0), *,
                   variants: Sequence[str] = VARIANTS, seed: int = 0, full: dict[str, FKTRun] | None = None,
                   **kwargs) -> pd.DataFrame:
    """Each variant trained on a stratified ``fraction`` of the train split (``labelled_fraction``; the rest is
    dropped, so the SSL terms see the small set too: the paper's small-data premise). Same epochs, batch size
    scaled with the fraction (at least 16) so the number of steps stays about the same. ``full``: results of a
    fraction-1.0 run to reuse. Returns one row per (fraction, variant) with the test metrics."""
    rows = []
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must lie in (0, 1], got {fraction}")
        for variant in variants:
            if fraction == 1.0 and full is not None and variant in full:
                result = full[variant]
            else:
                keep = labelled_fraction(data.train.labels, fraction, seed) if fraction < 1 else None
                sub = data.train if keep is None else data.train.subset(keep)
                batch = max(16, min(settings["batch_size"], round(settings["batch_size"] * fraction)))
                result = run_variant(variant, Splits(sub, data.val, data.test), settings, seed=seed,
                                     batch_size=min(batch, len(sub)), **kwargs)
            rows.append({"fraction": fraction, "variant": variant, "train_images": round(fraction * len(data.train)),
                         **result.metrics})
    return pd.DataFrame(rows)


def metrics_frame(results: dict[str, FKTRun], keys: Sequence[str] = ("accuracy", "precision_macro",
                  "recall_macro", "f1_macro", "kappa_quadratic")) -> pd.DataFrame:
    """One row per variant: the test metrics, the selected epoch and the training time."""
    return pd.DataFrame({name: {**{k: r.metrics[k] for k in keys}, "best_epoch": r.best_epoch, "seconds": r.seconds}
                         for name, r in results.items()}).T


def loss_terms(result: FKTRun) -> pd.DataFrame:
    """The per-step ``ce`` and ``ssl`` terms (and ``loss``) of an FKT run, for plotting both."""
    return result.steps[[c for c in ("step", "epoch", "loss", "ce", "ssl") if c in result.steps]]
