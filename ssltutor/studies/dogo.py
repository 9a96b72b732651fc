"""The DoGo study (paper 004): the small and the large model each trained alone, and the two trained as a DoGo pair.

* :func:`build`: a fresh method for one training ("small alone", "large alone" or "pair") from preset settings.
  The small backbone's and model 1's head weights depend only on the seed, so the small model starts from the same
  weights alone and in the pair.
* :func:`train`: ``fit`` with the preset's optimizer settings.
* :func:`evaluate_backbone`: frozen features -> :func:`ssltutor.probes.probe_suite` (all, few and noisy labels,
  kNN), plus a linear probe on a dataset the SSL never saw (``transfer``).
* :func:`run_study`: trainings x seeds on one dataset as a tidy DataFrame; :func:`summarize`: mean +- std;
  :func:`ssl_curves`: each model's SSL loss and KL per step, alone and in the pair.
* Figures: :func:`plot_similarity_distributions` (the B x B matrices P_k as heatmaps) and
  :func:`plot_label_curves` (accuracy against the labelled fraction and against the label-noise rate).

Notebook 06 calls these; the measurement script of the issue calls :func:`run_study` per dataset.
"""
from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor

from ..data import DatasetError, ImageDataset, load
from ..evaluate import extract_features
from ..methods import Method, create
from ..methods.dogo import backbone_from_name
from ..models import Backbone
from ..presets import preset as get_preset
from ..probes import probe_key, probe_suite
from ..train import History
from .base import cap, fit_with_preset
from .base import summarize as summarize_runs

__all__ = ["TRAININGS", "VARIANTS", "TRANSFER", "model_names", "build", "train", "variant_backbones",
           "evaluate_backbone", "transfer_data", "run_study", "ssl_curves", "summarize", "class_sorted_batch",
           "plot_similarity_distributions", "plot_label_curves"]

TRAININGS = ("small alone", "large alone", "pair")
# What each training yields for evaluation.
VARIANTS = {"small alone": ("small alone",), "large alone": ("large alone",),
            "pair": ("small in pair", "large in pair")}
# Out-of-distribution transfer: probe on a dataset the SSL never saw (None: skip).
TRANSFER = {"cifar10": "intel_image", "cifar100": "intel_image", "intel_image": "cifar10", "aptos2019": "intel_image",
            "digits": None}


def model_names(settings: dict, model_small: str | None = None, model_large: str | None = None) -> tuple[str, str]:
    """The two model names: the arguments, or the preset's ``model_small`` / ``model_large``."""
    return model_small or settings["model_small"], model_large or settings["model_large"]


def _seeded_backbone(name: str, seed: int) -> Backbone:
    torch.manual_seed(seed)
    return backbone_from_name(name)


def build(training: str, settings: dict, dataset: str | None = None, seed: int = 0, model_small: str | None = None,
          model_large: str | None = None) -> Method:
    """A fresh method for ``training`` ("small alone", "large alone" or "pair") from preset ``settings``."""
    if training not in TRAININGS:
        raise ValueError(f"unknown training {training!r}: choose one of {', '.join(TRAININGS)}")
    small, large = model_names(settings, model_small, model_large)
    common = dict(dataset=dataset, image_size=settings["image_size"], head_scale=settings["head_scale"],
                  temperature=settings["temperature"], kd_temperature=settings["kd_temperature"],
                  crop_scale=settings["crop_scale"])
    if training == "pair":
        backbone, peer = _seeded_backbone(small, seed), _seeded_backbone(large, seed + 1)
        torch.manual_seed(seed + 2)  # model 1's head is drawn first: the same weights as "small alone"
        return create("dogo", backbone, peer=peer, objective=settings["objective"],
                      peer_objective=settings["peer_objective"], lambda1=settings["lambda1"],
                      lambda2=settings["lambda2"], kl_reduction=settings["kl_reduction"], **common)
    name, offset = (small, 0) if training == "small alone" else (large, 1)
    backbone = _seeded_backbone(name, seed + offset)
    torch.manual_seed(seed + 2)
    objective = settings["objective"]
    if training == "large alone" and settings["peer_objective"]:
        objective = settings["peer_objective"]
    return create("dogo_baseline", backbone, objective=objective, **common)


def train(method: Method, data: ImageDataset, settings: dict, seed: int = 0, device=None,
          progress: bool = False) -> History:
    """``fit`` with the preset's epochs, batch size, optimizer, learning rate, schedule and precision."""
    return fit_with_preset(method, data, settings, epochs=settings["epochs"], seed=seed, device=device,
                           progress=progress)


def variant_backbones(training: str, method: Method) -> dict[str, Backbone]:
    """The backbones a training yields, by variant name (a pair yields both of its models)."""
    if training == "pair":
        return dict(zip(VARIANTS["pair"], method.backbones))
    return {training: method.backbone}


def evaluate_backbone(backbone: Backbone, method: Method, train_data: ImageDataset, test_data: ImageDataset,
                      settings: dict, seed: int = 0, transfer: tuple[ImageDataset, ImageDataset] | None = None
                      ) -> dict[str, float]:
    """Probe suite of a frozen backbone (inputs normalised as in training, no augmentation); with ``transfer``
    (train, test of another dataset) also ``transfer_linear``, a full linear probe on that dataset."""
    def features(data: ImageDataset) -> Tensor:
        return extract_features(backbone, data.images, transform=method.eval_transform)

    common = dict(val_fraction=settings["probe_val_fraction"], epochs=settings["probe_epochs"], seed=seed)
    results = probe_suite(features(train_data), train_data.labels, features(test_data), test_data.labels,
                          num_classes=len(train_data.classes), fractions=settings["label_fractions"],
                          noise_rates=settings["noise_rates"], knn_k=settings["knn_k"], **common)
    if transfer is not None:
        other_train, other_test = transfer
        ood = probe_suite(features(other_train), other_train.labels, features(other_test), other_test.labels,
                          num_classes=len(other_train.classes), knn_k=None, **common)
        results["transfer_linear"] = ood["linear"]
    return results


def transfer_data(dataset: str, data_root: str | None, settings: dict, seed: int = 0
                  ) -> tuple[str, tuple[ImageDataset, ImageDataset]] | tuple[str, None]:
    """(name, (train, test)) of the out-of-distribution dataset for ``dataset`` at the preset's size and caps, or
    (reason, None) when there is none (digits) or its files are not under ``data_root``."""
    name = TRANSFER.get(dataset)
    if name is None:
        return f"no transfer dataset for {dataset}", None
    try:
        size = settings["image_size"]
        pair = tuple(load(name, root=data_root, split=split, size=size) for split in ("train", "test"))
    except DatasetError as error:
        return f"{name} not available ({type(error).__name__}): transfer skipped", None
    return name, (cap(pair[0], settings["max_train"], seed), cap(pair[1], settings["max_test"], seed))


def run_study(dataset: str, data_root: str | None = None, preset: str = "cpu", seeds: Sequence[int] = (0,),
              trainings: Sequence[str] = TRAININGS, device=None, transfer: bool = False,
              log=print) -> pd.DataFrame:
    """Every training x seed on ``dataset``; one row per (seed, variant, metric) with its value, plus the wall
    time of each training as metric ``train_s``."""
    settings = get_preset(preset, paper="dogo", dataset=dataset)
    size = settings["image_size"]
    full_train, full_test = (load(dataset, root=data_root, split=split, size=size) for split in ("train", "test"))
    rows = []
    for seed in seeds:  # read once; each seed draws its own capped subset (max_train / max_test)
        train_data = cap(full_train, settings["max_train"], seed)
        test_data = cap(full_test, settings["max_test"], seed)
        ood = transfer_data(dataset, data_root, settings, seed)[1] if transfer else None
        for training in trainings:
            method = build(training, settings, dataset, seed)
            start = time.perf_counter()
            train(method, train_data, settings, seed, device)
            seconds = time.perf_counter() - start
            for variant, backbone in variant_backbones(training, method).items():
                metrics = evaluate_backbone(backbone, method, train_data, test_data, settings, seed, ood)
                metrics["train_s"] = seconds
                rows += [dict(dataset=dataset, seed=seed, variant=variant, metric=k, value=v)
                         for k, v in metrics.items()]
                log(f"{dataset} seed {seed} {variant}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return pd.DataFrame(rows)


def ssl_curves(histories: dict[str, History]) -> dict[str, pd.DataFrame]:
    """Per-step curves by variant, columns ``step``, ``ssl`` (that model's SSL loss) and, in the pair, ``kl``
    (its KL to the peer), for ``plots.plot_history(..., x="step")``. ``histories``: {training: History}."""
    curves = {}
    for training, history in histories.items():
        steps = history.steps
        if training == "pair":
            for variant, k in zip(VARIANTS["pair"], ("1", "2")):
                curves[variant] = steps[["step", f"ssl{k}", f"kl{k}"]].set_axis(["step", "ssl", "kl"], axis=1)
        else:
            curves[training] = steps[["step", "ssl1"]].set_axis(["step", "ssl"], axis=1)
    return curves


def summarize(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """``mean +- std`` (over seeds, in percent for accuracies) per (dataset, variant) and metric."""
    names = [m for m in dict.fromkeys(df.metric) if metrics is None or m in metrics]
    wide = df.pivot_table(index=["dataset", "variant", "seed"], columns="metric", values="value").reset_index()
    stats = summarize_runs(wide, ("dataset", "variant"), names, sort=True).set_index(["dataset", "variant"])

    def cells(metric: str) -> pd.Series:
        scale = 1 if metric == "train_s" else 100
        mean, std = stats[f"{metric}_mean"], stats[f"{metric}_std"].fillna(0.0)
        return (scale * mean).map("{:.1f}".format) + " +- " + (scale * std).map("{:.1f}".format)

    return pd.DataFrame({m: cells(m) for m in names if f"{m}_mean" in stats}).rename_axis(columns="metric")


def class_sorted_batch(data: ImageDataset, per_class: int = 2, seed: int = 0) -> Tensor:
    """Indices of ``per_class`` random images of each class, grouped by class (for heatmaps with class blocks)."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(len(data.classes)):
        members = torch.nonzero(data.labels == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks)


# --------------------------------------------------------------------------------------------------------- figures
def plot_similarity_distributions(distributions: dict[str, Tensor], labels: Tensor | None = None,
                                  title: str | None = None, vmax: float | None = None):
    """One heatmap per similarity distribution P (B x B; row i: view-1 anchor i, column j: view-2 sample j; the
    diagonal holds the positives). With class-grouped ``labels`` thin lines mark the class blocks."""
    import matplotlib.pyplot as plt

    names = list(distributions)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.8, 3.4), layout="constrained",
                             squeeze=False)
    top = vmax or max(float(p.max()) for p in distributions.values())
    image = None
    for ax, name in zip(axes[0], names):
        p = distributions[name].detach().float().cpu().numpy()
        image = ax.imshow(p, cmap="magma", vmin=0.0, vmax=top)
        diagonal = float(p.diagonal().mean())
        ax.set_title(f"{name}\nmean P[i, i] = {diagonal:.2f}", fontsize="small")
        ax.set_xlabel("view 2 sample j")
        ax.set_ylabel("view 1 anchor i")
        if labels is not None:
            bounds = (torch.nonzero(labels[1:] != labels[:-1]).flatten() + 0.5).tolist()
            for b in bounds:
                ax.axhline(b, color="white", linewidth=0.4, alpha=0.6)
                ax.axvline(b, color="white", linewidth=0.4, alpha=0.6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="P[i, j]")
    if title:
        fig.suptitle(title)
    return fig


def plot_label_curves(results: dict[str, dict[str, float]], fractions: Sequence[float],
                      noise_rates: Sequence[float], title: str | None = None):
    """Two panels: linear accuracy against the labelled fraction (log scale) and against the label-noise rate, one
    line per variant. ``results``: {variant: {metric: accuracy}} with :func:`ssltutor.probes.probe_key` keys."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    fractions = sorted(set(fractions) | {1.0})
    rates = [0.0] + sorted(noise_rates)
    for variant, metrics in results.items():
        style = "-" if "pair" in variant else "--"
        left.plot([100 * f for f in fractions], [100 * metrics[probe_key(f)] for f in fractions], style, marker="o",
                  label=variant)
        right.plot([100 * r for r in rates], [100 * metrics[probe_key(noise=r)] for r in rates], style, marker="o",
                   label=variant)
    left.set_xscale("log")
    left.set_xticks([100 * f for f in fractions], [f"{100 * f:g}" for f in fractions])
    left.set_xlabel("labelled training images (%)")
    right.set_xlabel("symmetric label noise (%)")
    for ax, name in ((left, "limited labels"), (right, "noisy labels")):
        ax.set_ylabel("linear accuracy (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    right.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
