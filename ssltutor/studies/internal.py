"""The internal-pretext study (paper 001): supervised vs internal pretext task (single and aggregated inference)
vs SLA's rotation joint labels, and the ablation over the discard position and the number of groups M.

* :func:`run_variant`: train one variant on the (labelled) train set, evaluate every inference mode on the test
  set, and measure the median training step time.
* :func:`run_study`: variants x seeds as a tidy DataFrame (one row per run and inference mode); :func:`summarize`
  gives mean +- std over seeds and each variant's step time over the supervised one.
* :func:`run_ablation`: the internal variant at each stage and each M, accuracy and step-time overhead.
* :func:`joint_label_table`, :func:`plot_discard_masks`, :func:`plot_discarded_features`, :func:`plot_ablation`: the
  notebook's worked example and figures.

Notebook 03 calls these; the issue's measurement script calls :func:`run_study` per dataset and seed.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ..data import ImageDataset, labelled_fraction
from ..evaluate import predict_labels
from ..methods import Method, create
from ..methods.internal import INFERENCE_MODES, InternalPretext, decode, joint_labels
from ..methods.supervised import Supervised
from ..models import CONVNETS, Backbone, create_backbone
from ..timing import fastest_steps, random_images, training_step
from ..train import resolve_device
from .base import VariantRun, fit_with_preset, run_grid, seeded_backbone
from .base import summarize as summarize_runs

__all__ = ["VARIANTS", "METHOD_KEYS", "build_method", "labelled_train", "run_variant", "accuracy_by_inference",
           "run_study", "summarize",
           "step_times", "step_time_ratio", "ablation_step_ratio", "run_ablation", "joint_label_table", "plot_discard_masks", "plot_discarded_features", "plot_ablation"]

# variant -> (registered method, options on top of the preset's internal options)
VARIANTS: dict[str, tuple[str, dict]] = {
    "supervised": ("supervised", {}),
    "internal": ("internal", {}),
    "sla": ("sla", {}),
    "internal+sla": ("internal", {"rotation": True}),
    "internal+fkt": ("internal", {"contrastive_weight": 1.0}),
}
# Preset keys that are InternalPretext options.
METHOD_KEYS = ("stage", "num_groups", "include_identity", "grouping", "rescale")


def build_method(variant: str, settings: dict, num_classes: int, dataset: str | None = None, seed: int = 0,
                 **options) -> Method:
    """A fresh method for ``variant`` (a key of :data:`VARIANTS`) from preset ``settings``; the backbone weights
    depend only on ``seed``, so every variant of a seed starts from the same backbone."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    name, extra = VARIANTS[variant]
    backbone = seeded_backbone(settings, seed)
    kw = dict(extra)
    if name == "internal":
        kw.update({k: settings[k] for k in METHOD_KEYS if k in settings})
        if kw.get("contrastive_weight"):
            kw.setdefault("head_scale", settings["head_scale"])
    kw.update(options)
    return create(name, backbone, dataset=dataset, num_classes=num_classes, image_size=settings["image_size"], **kw)


def labelled_train(train: ImageDataset, settings: dict, seed: int = 0) -> ImageDataset:
    """The labelled part of ``train``: ``settings["labelled_fraction"]`` of it, class-balanced and drawn from
    ``seed`` (the presets lower it per dataset through ``dataset_overrides``: digits 0.2 at smoke and cpu)."""
    fraction = settings["labelled_fraction"]
    return train if fraction >= 1 else train.subset(labelled_fraction(train.labels, fraction, seed))


def _median_step_s(history, batch_size: int) -> float:
    """Median seconds per training step over the run (the first step of each epoch included; the median ignores
    the odd slow one)."""
    return float((batch_size / history.steps["images_per_s"]).median())


def run_variant(variant: str, train: ImageDataset, test: ImageDataset, settings: dict, seed: int = 0, device=None,
                **options) -> VariantRun:
    """Train ``variant`` on ``train`` (already the labelled part) with the preset's optimisation settings and
    evaluate on ``test``. Returns a :class:`~ssltutor.studies.base.VariantRun` with metrics ``accuracy`` (the
    supervised baseline) or ``accuracy_single`` and ``accuracy_aggregated`` (joint-label methods; see
    :func:`accuracy_by_inference`), ``train_s`` and ``step_s`` (median seconds per training step)."""
    method = build_method(variant, settings, len(train.classes), train.name, seed, **options)
    history = fit_with_preset(method, train, settings, epochs=settings["epochs"], seed=seed, device=device)
    modes = INFERENCE_MODES if hasattr(method, "num_transforms") else (None,)
    metrics = {"accuracy" + (f"_{mode}" if mode else ""):
               float((predict_labels(method, test.images, mode) == test.labels.cpu()).float().mean())
               for mode in modes}
    train_s = float(history.epochs["time_s"].sum())
    metrics.update(train_s=train_s, step_s=_median_step_s(history, min(settings["batch_size"], len(train))))
    return VariantRun(variant, seed, method, metrics, history.epochs, train_s)


def accuracy_by_inference(run: VariantRun) -> dict[str, float]:
    """{"plain": a} for the supervised baseline, {"single": a, "aggregated": b} for a joint-label method."""
    return {key.partition("_")[2] or "plain": value for key, value in run.metrics.items()
            if key.startswith("accuracy")}


def run_study(train: ImageDataset, test: ImageDataset, settings: dict,
              variants: Sequence[str] = ("supervised", "internal", "sla"), seeds: Sequence[int] = (0,), device=None,
              on_result: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Every variant for every seed on the labelled part of ``train`` (:func:`labelled_train`, per seed). Returns
    one row per run and inference mode: dataset, variant, inference, seed, accuracy, train_s, step_s, labelled
    (images trained on). ``on_result`` gets each run's rows as they finish (to log or save partial results)."""
    def run(variant: str, seed: int) -> list[dict]:
        labelled = labelled_train(train, settings, seed)
        out = run_variant(variant, labelled, test, settings, seed, device)
        return [{"dataset": train.name, "variant": variant, "inference": mode, "seed": seed, "accuracy": acc,
                 "train_s": out.metrics["train_s"], "step_s": out.metrics["step_s"], "labelled": len(labelled)}
                for mode, acc in accuracy_by_inference(out).items()]

    return run_grid(run, variants, seeds, on_result)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of accuracy per (dataset, variant, inference), plus ``overhead``: the variant's
    median step time over the supervised run's of the same dataset and seed (mean and std over seeds)."""
    supervised = runs[runs.variant == "supervised"].groupby(["dataset", "seed"])["step_s"].first()
    runs = runs.assign(overhead=runs["step_s"].to_numpy()
                       / supervised.reindex(pd.MultiIndex.from_frame(runs[["dataset", "seed"]])).to_numpy())
    return summarize_runs(runs, ("dataset", "variant", "inference"), ("accuracy", "overhead"))


def step_times(stage: int = -2, num_groups: int = 4, backbone: str | Backbone = "small_convnet",
               batch_size: int = 128, image_size: int = 32, precision: str = "fp32", repeats: int = 10,
               width: int = 32, channels_last: bool = False, device=None, num_classes: int = 10, warmup: int = 2,
               **options) -> dict:
    """Seconds per training step of the supervised baseline and of :class:`InternalPretext` (discard after
    ``stage``, ``num_groups`` = M) with the same backbone weights and batch; the step is
    :func:`ssltutor.timing.training_step` (views, forward, backward, SGD update, end-of-step hook).

    backbone: a name (``width`` applies to ``small_convnet``) or a Backbone (copied). The two methods are timed
    alternately, ``repeats`` steps each after ``warmup``, and each keeps its fastest step
    (:func:`ssltutor.timing.fastest_steps`). ``options`` go to :class:`InternalPretext` (e.g. ``rotation=True``,
    ``include_identity=True``). Returns {"supervised_s", "internal_s", "ratio"}.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be one of 'fp32', 'bf16', 'fp16', got {precision!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    device = resolve_device(device)
    if isinstance(backbone, str):
        net = create_backbone(backbone, **({"width": width} if backbone in CONVNETS else {}))
    else:
        net = backbone
    methods = {"supervised": Supervised(copy.deepcopy(net), num_classes, image_size),
               "internal": InternalPretext(copy.deepcopy(net), num_classes, stage, num_groups, image_size=image_size,
                                           **options)}
    images = random_images(batch_size, image_size, device=device)
    labels = torch.arange(batch_size, device=device) % num_classes
    steps = {}
    for name, m in methods.items():
        m.to(device).train()
        if channels_last:
            m.use_channels_last()
        steps[name] = training_step(m, images, labels, precision, device)
    best = fastest_steps(steps, device, rounds=repeats, warmup=warmup)
    return {"supervised_s": best["supervised"], "internal_s": best["internal"],
            "ratio": best["internal"] / best["supervised"]}


def step_time_ratio(stage: int = -2, M: int = 4, backbone: str | Backbone = "small_convnet",
                    batch_size: int = 128, image_size: int = 32, precision: str = "fp32", repeats: int = 10,
                    **options) -> float:
    """Step time of the internal pretext task (discard after ``stage``, M groups) over the supervised step with the
    same backbone and batch: :func:`step_times`'s ratio (``options``: width, channels_last, device, warmup and
    InternalPretext options)."""
    return step_times(stage, M, backbone, batch_size, image_size, precision, repeats, **options)["ratio"]


def ablation_step_ratio(settings: dict, stage: int, num_groups: int, num_classes: int, device=None,
                        repeats: int | None = None) -> float:
    """Step time over the supervised step for the preset's backbone, batch size, image size and precision
    (:func:`step_times` on one fixed batch, timed alternately: cleaner than the
    per-step times of a training run on a shared machine). ``repeats``: default ``settings["timing_repeats"]``
    (the preset's ``timing_repeats``)."""
    repeats = settings["timing_repeats"] if repeats is None else repeats
    return step_times(stage, num_groups, settings["backbone"], settings["batch_size"], settings["image_size"],
                      settings["precision"], repeats, width=settings["width"] or 32,
                      channels_last=settings["channels_last"], device=device, num_classes=num_classes)["ratio"]


def run_ablation(train: ImageDataset, test: ImageDataset, settings: dict, stages: Sequence[int] | None = None,
                 groups: Sequence[int] | None = None, seed: int = 0, device=None,
                 known: Sequence[VariantRun] = ()) -> pd.DataFrame:
    """The internal variant at each discard position (``stages``, default ``settings["ablation_stages"]`` or every
    stage; M = the preset's ``num_groups``) and each M (``groups``, default ``settings["ablation_groups"]``; at the
    preset's stage). ``known``: :func:`run_variant` outputs of internal runs already trained with the same
    settings and seed (the main internal run), reused for their (stage, M) instead of trained again.
    Returns one row per run and inference mode: ablation ("stage" or "M"), stage, M, inference, accuracy,
    train_step_s (median step of the training run) and overhead (:func:`ablation_step_ratio`)."""
    n_stages = len(create_backbone(settings["backbone"], width=settings["width"] or 32).stages)
    default_stage = settings["stage"] % n_stages  # -2: the stage before the last
    stages = settings["ablation_stages"] if stages is None else stages
    stages = range(n_stages) if stages is None else stages
    groups = settings["ablation_groups"] if groups is None else groups
    configs = [("stage", s, settings["num_groups"]) for s in stages] + [("M", default_stage, m) for m in groups]
    runs = {(out.method.stage, out.method.num_groups): out for out in known}
    ratios: dict[tuple[int, int], float] = {}
    rows = []
    for ablation, stage, m in configs:
        if (stage, m) not in runs:
            runs[(stage, m)] = run_variant("internal", train, test, settings, seed, device, stage=stage, num_groups=m)
        if (stage, m) not in ratios:
            ratios[(stage, m)] = ablation_step_ratio(settings, stage, m, len(train.classes), device)
        out = runs[(stage, m)]
        for mode, acc in accuracy_by_inference(out).items():
            rows.append({"ablation": ablation, "stage": stage, "M": m, "inference": mode, "accuracy": acc,
                         "train_step_s": out.metrics["step_s"], "overhead": ratios[(stage, m)]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------------------
# The notebook's worked example and figures
# ------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def discarded_group_features(backbone: Backbone, images: torch.Tensor, stage: int, num_groups: int = 4,
                             batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled features a joint-label head reads when channel group j of stage ``stage``'s output is discarded:
    each of ``images`` (normalized, (B, 3, S, S)) once per group through the frozen ``backbone`` (eval mode) ->
    features (M * B, D) and the discarded group (M * B,) of each row."""
    from ..methods.internal import channel_groups, discard_channels, discard_masks

    backbone.eval()
    masks = discard_masks(channel_groups(backbone.stage_channels[stage], num_groups)).to(images.device)
    feats, groups = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        f = discard_channels(backbone.forward_stages(backbone.stem(x), 0, stage + 1), masks)
        feats.append(backbone.pool(backbone.forward_stages(f, stage + 1)).float())
        groups.append(torch.arange(num_groups, device=images.device).repeat_interleave(len(x)))
    return torch.cat(feats), torch.cat(groups)


def group_recovery(backbone: Backbone, images: torch.Tensor, stages: Sequence[int] | None = None,
                   num_groups: int = 4, train_fraction: float = 0.5, epochs: int = 50, seed: int = 0
                   ) -> pd.DataFrame:
    """Why the discarding stage matters, measured on a *frozen, untrained* backbone, per stage:

    * ``zeroed``: the share of the pooled vector (the head's input) that is exactly zero in a discarded copy, and
      ``zeroed_undiscarded`` the same share without discarding. After the last stage it is the discarded group
      itself (~1/M): the copy reaches the linear head with that block set to zero, so the K copies are K linear
      heads over one feature vector with a different block masked, and nothing after the discard point is
      learnable but the head. After an earlier stage the zeros pass through later convolutions that mix channels
      and the share drops to what ReLU zeroes anyway: the later stages compute on each masked map.
    * ``group_accuracy``: how well a *linear* head on the pooled features tells which group was discarded (probe
      trained on ``train_fraction`` of ``images``, accuracy on the rest; ``chance`` is 1/M). High at the last stage
      by construction (a block of zeros); at earlier stages it measures how much of the discard the random later
      stages carry through.

    ``images``: normalized, (B, 3, S, S). Returns one row per stage."""
    from ..evaluate import linear_probe

    stages = list(range(len(backbone.stages))) if stages is None else list(stages)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * len(images))
    with torch.no_grad():  # the undiscarded pooled features: the same for every stage
        plain = backbone.eval()(images[order[cut:]]).float()
    zeroed_undiscarded = float((plain == 0).float().mean())
    rows = []
    for stage in stages:
        train_x, train_y = discarded_group_features(backbone, images[order[:cut]], stage, num_groups)
        test_x, test_y = discarded_group_features(backbone, images[order[cut:]], stage, num_groups)
        probe = linear_probe(train_x, train_y, test_x, test_y, num_classes=num_groups, epochs=epochs, seed=seed)
        rows.append({"stage": stage, "channels": backbone.stage_channels[stage], "groups": num_groups,
                     "last": stage == len(backbone.stages) - 1,
                     "zeroed": float((test_x == 0).float().mean()),
                     "zeroed_undiscarded": zeroed_undiscarded,
                     "group_accuracy": probe.accuracy, "chance": 1 / num_groups})
    return pd.DataFrame(rows)


def joint_label_table(labels: torch.Tensor, num_transforms: int, class_names: Sequence[str] | None = None,
                      transform_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per copy of each image of a small batch: image, class y, transform j, joint label y * M + j, and
    the (y, j) that :func:`decode` recovers from it. Copies are in the training row order (copy-major)."""
    batch = len(labels)
    j = torch.arange(num_transforms).repeat_interleave(batch)
    y = labels.cpu().repeat(num_transforms)
    joint = joint_labels(y, j, num_transforms)
    y_back, j_back = decode(joint, num_transforms)
    names = class_names or [str(c) for c in range(int(y.max()) + 1)]
    tnames = transform_names or [f"t{t}" for t in range(num_transforms)]
    return pd.DataFrame({"row": range(len(y)), "image": np.tile(np.arange(batch), num_transforms),
                         "class y": [names[c] for c in y.tolist()], "transform j": [tnames[t] for t in j.tolist()],
                         "joint y*M+j": joint.tolist(), "decoded (y, j)": list(zip(y_back.tolist(), j_back.tolist()))})


def plot_discard_masks(methods: dict[str, InternalPretext]) -> Figure:
    """One heatmap per method: rows = feature transforms (copies), columns = channels at the discard point; dark =
    discarded (0), light = kept (1, or C/kept with rescaling)."""
    fig, axes = plt.subplots(len(methods), 1, figsize=(8, 1.2 + 0.45 * sum(m.masks.shape[0] for m in
                                                                            methods.values())),
                             layout="constrained", squeeze=False)
    for ax, (title, m) in zip(axes[:, 0], methods.items()):
        masks = m.masks.detach().cpu().numpy()
        image = ax.imshow(masks, aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0, float(masks.max())),
                          interpolation="nearest")
        ax.set_yticks(range(len(masks)), [f"copy {t}" for t in range(len(masks))])
        ax.set_xlabel(f"channel after stage {m.stage} ({masks.shape[1]} channels)")
        ax.set_title(title, fontsize="medium")
        fig.colorbar(image, ax=ax, label="multiplier", fraction=0.03)
    return fig


@torch.no_grad()
def plot_discarded_features(method: InternalPretext, image: torch.Tensor, channels: int = 16) -> Figure:
    """The first ``channels`` feature maps of one uint8 image (3, H, W) at the discard point, once per copy: the
    discarded channels are blank. Rows = copies, columns = channels."""
    method.eval()
    x = method.eval_transform(image.unsqueeze(0).to(method.masks.device), None)
    f = method.backbone.forward_stages(method.backbone.stem(x), 0, method.stage + 1)[0].float()
    channels = min(channels, f.shape[0])
    copies = (f.unsqueeze(0) * method.masks[:, :, None, None])[:, :channels].cpu().numpy()
    vmax = float(np.abs(copies).max()) or 1.0
    fig, axes = plt.subplots(len(copies), channels, figsize=(0.55 * channels + 0.8, 0.6 * len(copies) + 0.5),
                             layout="constrained", squeeze=False)
    for t, row in enumerate(axes):
        for c, ax in enumerate(row):
            ax.imshow(copies[t, c], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"copy {t}", fontsize="small")
            if t == 0:
                ax.set_title(str(c), fontsize="x-small")
    fig.suptitle(f"feature maps after stage {method.stage} (channels 0-{channels - 1}); blank = discarded",
                 fontsize="small")
    return fig


def plot_ablation(ablation: pd.DataFrame, reference: dict[str, float] | None = None) -> Figure:
    """Two panels (stage, M): accuracy per inference mode as lines (left axis) and the step-time overhead over the
    supervised step as bars (right axis). ``reference``: horizontal lines, e.g. {"supervised": accuracy}."""
    kinds = [k for k in ("stage", "M") if k in set(ablation["ablation"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 3.8), layout="constrained", squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        part = ablation[ablation.ablation == kind]
        xs = sorted(set(part[kind]))
        pos = np.arange(len(xs))
        cost = ax.twinx()
        overhead = part.groupby(kind)["overhead"].first().reindex(xs).to_numpy(dtype=float)
        bars = cost.bar(pos, overhead, width=0.5, color="0.85", zorder=0, label="step time / supervised")
        cost.bar_label(bars, fmt="%.2fx", fontsize="x-small")
        cost.set_ylabel("step time / supervised")
        cost.set_ylim(0, max(1.5, np.nanmax(overhead) * 1.25) if np.isfinite(overhead).any() else 1.5)
        ax.set_zorder(cost.get_zorder() + 1)
        ax.patch.set_visible(False)
        for mode, rows in part.groupby("inference", sort=False):
            ax.plot(pos, rows.set_index(kind)["accuracy"].reindex(xs).to_numpy(), marker="o", label=f"internal, {mode}")
        for name, value in (reference or {}).items():
            ax.axhline(value, linestyle="--", color="0.3", linewidth=1, label=name)
        ax.set_xticks(pos, [str(x) for x in xs])
        ax.set_xlabel("discard after stage" if kind == "stage" else "M (channel groups)")
        ax.set_ylabel("test accuracy")
        handles = ax.get_legend_handles_labels()
        extra = cost.get_legend_handles_labels()
        ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize="x-small", loc="lower left")
        ax.grid(axis="y", alpha=0.3)
    return fig
