"""The figures the book shows: training curves, accuracy matrices, embeddings, collapse, galleries.

Every function draws with matplotlib, returns the :class:`~matplotlib.figure.Figure` and never calls ``plt.show``.
Functions that draw a single panel accept ``ax=`` to draw into an existing axes (and then return its figure).
Figures are created with ``pyplot``, so Jupyter shows them at the end of the cell: in a notebook either assign the
result (``fig = plot_history(h)``) or end the line with ``;``, otherwise the returned figure is displayed twice.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

__all__ = [
    "plot_history",
    "plot_accuracy_matrix",
    "plot_embeddings",
    "plot_collapse",
    "plot_image_grid",
    "plot_views",
    "plot_class_balance",
    "plot_bar_comparison",
    "plot_accuracy_vs_time",
]


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() else values.detach().cpu().numpy()
    return np.asarray(values)


def _new_axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


# ----------------------------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------------------------
def _as_frame(history) -> pd.DataFrame:
    if isinstance(history, pd.DataFrame):
        return history
    for attribute in ("to_frame", "to_dataframe"):
        if callable(getattr(history, attribute, None)):
            return getattr(history, attribute)()
    if isinstance(getattr(history, "frame", None), pd.DataFrame):
        return history.frame
    return pd.DataFrame(history)


def _is_single_history(history) -> bool:
    """A DataFrame, a History object, or a dict/list of columns/records; not a ``{run name: history}`` mapping."""
    if not isinstance(history, Mapping):
        return True
    return not all(isinstance(v, pd.DataFrame) or hasattr(v, "to_frame") for v in history.values())


def _curve(frame: pd.DataFrame, x: str, key: str, smooth: int | None) -> tuple[pd.Series, pd.Series | None]:
    """(curve, raw): per-epoch mean when several rows share an epoch, else a rolling mean over steps."""
    data = frame[[x, key]].dropna()
    if data[x].duplicated().any():  # several rows per x (per-step rows plotted per epoch): average them
        return data.groupby(x)[key].mean(), None
    series = data.set_index(x)[key]
    window = max(1, len(series) // 50) if smooth is None else max(1, int(smooth))
    if window == 1:
        return series, None
    return series.rolling(window, min_periods=1).mean(), series


def plot_history(
    history,
    keys: Sequence[str] = ("loss",),
    x: str = "epoch",
    ax=None,
    title: str | None = None,
    smooth: int | None = None,
) -> Figure:
    """Training curves, one panel per key.

    Args:
        history: a DataFrame with columns ``step, epoch, loss, lr`` and metric columns (as returned by ``fit``;
            objects with ``to_frame()`` and dicts of columns work too), or ``{run name: history}`` to compare runs.
        keys: columns to plot; missing columns are skipped (e.g. a metric only some runs log).
        x: ``"epoch"`` (several rows per epoch are averaged) or ``"step"``.
        ax: draw every key into this axes instead of one panel per key.
        title: figure title (with ``ax``: that axes' title).
        smooth: rolling-mean window over rows when ``x`` has one row per value; default ``rows // 50``; the raw
            curve is drawn faintly behind a smoothed one.
    """
    runs = {None: history} if _is_single_history(history) else dict(history)
    frames = {name: _as_frame(h) for name, h in runs.items()}
    keys = list(keys)
    if ax is None:
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), layout="constrained", squeeze=False)
        axes = list(axes[0])
    else:
        fig, axes = ax.figure, [ax] * len(keys)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (key, panel) in enumerate(zip(keys, axes)):
        for r, (name, frame) in enumerate(frames.items()):
            if key not in frame or x not in frame:
                continue
            # one colour per run; on a shared axes also one per key
            color = palette[(r + (k * len(frames) if ax is not None else 0)) % len(palette)]
            curve, raw = _curve(frame, x, key, smooth)
            if raw is not None:
                panel.plot(raw.index, raw.values, color=color, alpha=0.25, linewidth=0.8)
            parts = [p for p in (name, key if ax is not None else None) if p]
            panel.plot(curve.index, curve.values, color=color, label=" ".join(parts) or None)
        panel.set_xlabel(x)
        if ax is None:
            panel.set_ylabel(key)
            panel.set_title(key)
        panel.grid(alpha=0.3)
        if panel.get_legend_handles_labels()[1]:
            panel.legend(fontsize="small")
    if title and ax is not None:
        ax.set_title(title)  # the caller's panel, not the whole figure it shares with other panels
    elif title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Matrices
# ----------------------------------------------------------------------------------------------------------------
def _heatmap(ax, values: np.ndarray, fmt: str, vmin: float, vmax: float, cmap: str, annotate: bool):
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax)
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                r, g, b, _ = image.cmap(image.norm(value))
                color = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"  # readable on the cell
                ax.text(j, i, format(value, fmt), ha="center", va="center", color=color, fontsize="small")
    return image


def plot_accuracy_matrix(
    R,
    task_names: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Continual-learning accuracy matrix ``R[i, j]`` (accuracy on task j after training task i), annotated.

    Args:
        R: ``(T, T)`` in [0, 1] or in percent (the colour scale follows); NaN cells (not measured) stay blank.
        task_names: ``T`` labels (default ``task 1 .. task T``).
    """
    R = _as_numpy(R).astype(float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"R must be a square (T, T) matrix, got shape {R.shape}")
    T = len(R)
    names = list(task_names) if task_names is not None else [f"task {t + 1}" for t in range(T)]
    if len(names) != T:
        raise ValueError(f"got {len(names)} task_names for a {T}x{T} accuracy matrix")
    percent = np.nanmax(R, initial=0.0) > 1.0
    side = min(10.0, 2.5 + 0.7 * T)
    fig, ax = _new_axes(ax, (side + 1, side))
    image = _heatmap(ax, R, ".1f" if percent else ".2f", 0.0, 100.0 if percent else 1.0, cmap, annotate=T <= 20)
    fig.colorbar(image, ax=ax, label="accuracy (%)" if percent else "accuracy", shrink=0.8)
    ax.set_xticks(range(T), names)
    ax.set_yticks(range(T), names)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("after training")
    ax.set_title(title or "accuracy matrix R[i, j]")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Representations
# ----------------------------------------------------------------------------------------------------------------
def _project_2d(features: np.ndarray, method: str, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n, d = features.shape
    if d < 2:  # nothing to project: pad a zero second coordinate
        features = np.concatenate([features, np.zeros((n, 2 - d), dtype=features.dtype)], axis=1)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if d > 50 and n > 50:  # the usual PCA-to-50 step: faster t-SNE, less noise
        features = PCA(n_components=50, random_state=seed).fit_transform(features)
    perplexity = float(min(30, max(1, n - 1)))  # sklearn requires perplexity < N
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(features)


def plot_embeddings(
    features,
    labels,
    class_names: Sequence[str] | None = None,
    method: str = "tsne",
    seed: int = 0,
    max_points: int = 2000,
    ax=None,
    title: str | None = None,
) -> Figure:
    """2-D map of features coloured by class (t-SNE with PCA init, or PCA).

    Args:
        features: ``(N, D)``; ``labels``: int ``(N,)``; ``class_names``: names indexed by label.
        method: ``"tsne"`` (perplexity ``min(30, N - 1)``, PCA init; features first reduced to 50 dims by PCA)
            or ``"pca"``.
        seed: subsampling and t-SNE seed.
        max_points: at most this many points, drawn uniformly at random (t-SNE is quadratic in N).
    """
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    features, labels = _as_numpy(features).astype(np.float32), _as_numpy(labels)
    if features.ndim != 2 or labels.shape != (len(features),) or len(features) < 2:
        raise ValueError(f"need features (N, D) and labels (N,) with N >= 2, got {features.shape} and {labels.shape}")
    if len(features) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(features), max_points, replace=False))
        features, labels = features[keep], labels[keep]
    points = _project_2d(features, method, seed)
    fig, ax = _new_axes(ax, (6.0, 5.0))
    classes = np.unique(labels)
    colors = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo")
    for i, c in enumerate(classes):
        mask = labels == c
        name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else str(c)
        color = colors(i % colors.N if colors.N < 256 else i / max(1, len(classes) - 1))
        ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.7, color=color, label=name)
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize="small", loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    method_name = "t-SNE" if method == "tsne" else "PCA"
    ax.set_title(title or f"{method_name} of {features.shape[1]}-d features ({len(points)} points)")
    return fig


def plot_collapse(embeddings, ax=None, title: str | None = None) -> Figure:
    """Collapse diagnostic: sorted per-dimension std of L2-normalized embeddings (Chen & He, 2021, SimSiam Fig. 2).

    For ``z / ||z||`` with ``D`` dims, healthy representations spread over the sphere have per-dimension std close
    to ``1 / sqrt(D)`` (dashed line); a collapsed encoder (one constant output) gives std 0 in every dimension, a
    dimensional collapse leaves only a few dimensions with non-zero std.

    Args:
        embeddings: ``{name: (N, D) tensor}`` (or one ``(N, D)`` tensor).
    """
    if not isinstance(embeddings, Mapping):
        embeddings = {"embeddings": embeddings}
    fig, ax = _new_axes(ax, (6.0, 4.0))
    dims = set()
    for name, z in embeddings.items():
        z = torch.as_tensor(_as_numpy(z), dtype=torch.float32)
        if z.ndim != 2 or len(z) < 2:
            raise ValueError(f"embeddings[{name!r}] must be (N, D) with N >= 2, got shape {tuple(z.shape)}")
        std = torch.nn.functional.normalize(z, dim=1).std(dim=0).sort(descending=True).values.numpy()
        ax.plot(np.arange(1, len(std) + 1), std, label=f"{name} (mean std {std.mean():.3f})")
        dims.add(z.shape[1])
    for d in sorted(dims):
        reference = 1 / math.sqrt(d)
        ax.axhline(reference, color="gray", linestyle="--", linewidth=1, label=f"1/sqrt({d}) = {reference:.3f}")
    ax.set_xlabel("dimension (sorted by std)")
    ax.set_ylabel("std of normalized embedding")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or "collapse check: per-dimension std")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------
def _displayable(images, mean=None, std=None) -> np.ndarray:
    """(B, 3, H, W) uint8, or float in [0, 1], or float normalized with mean/std -> (B, H, W, 3) float in [0, 1]."""
    x = torch.as_tensor(_as_numpy(images))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 3, H, W) or (B, 1, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    else:
        x = x.float()
        if std is not None:
            x = x * torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if mean is not None:
            x = x + torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    return x.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()


def _show(ax, image: np.ndarray, caption: str | None = None) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if caption:
        ax.set_title(caption, fontsize="small")


def plot_image_grid(
    images,
    labels=None,
    class_names: Sequence[str] | None = None,
    nrow: int = 8,
    title: str | None = None,
    mean=None,
    std=None,
) -> Figure:
    """Images in a grid of ``nrow`` columns, captioned with their class.

    Args:
        images: ``(B, 3, H, W)`` uint8 (or float, unnormalized with ``mean``/``std`` when given).
        labels: int ``(B,)``; captions use ``class_names[label]`` when given.
        nrow: images per row.
    """
    pictures = _displayable(images, mean, std)
    labels = None if labels is None else _as_numpy(labels).reshape(-1)
    n = len(pictures)
    cols = max(1, min(nrow, n))
    rows = math.ceil(n / cols)
    cell = 1.5 + 0.3 * (labels is not None)  # room for the captions
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, cell * rows + 0.4 * (title is not None)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        caption = None
        if labels is not None:
            label = int(labels[i])
            caption = class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)
        _show(ax, pictures[i], caption)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_views(
    original,
    views_list: Sequence,
    mean=None,
    std=None,
    view_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Augmentation gallery: one row per image, its original then each augmented view.

    Args:
        original: ``(B, 3, H, W)`` uint8 source images.
        views_list: list of views, each ``(B, 3, S, S)`` (e.g. the output of a ``MultiView``); float views are
            unnormalized with ``mean``/``std`` (the dataset statistics used by the pipeline) before display.
        view_names: column titles (default ``view 1 .. view V``).
    """
    originals = _displayable(original)
    views = [_displayable(v, mean, std) for v in views_list]
    B = len(originals)
    if any(len(v) != B for v in views):
        raise ValueError(f"every view must hold the {B} images of `original`, got {[len(v) for v in views]}")
    if view_names is None:
        view_names = [f"view {i + 1}" for i in range(len(views))]
    names = ["original", *view_names]
    cols = 1 + len(views)
    fig, axes = plt.subplots(B, cols, figsize=(1.6 * cols, 1.6 * B + 0.4), squeeze=False)
    for i in range(B):
        for j, picture in enumerate([originals[i]] + [v[i] for v in views]):
            _show(axes[i, j], picture, names[j] if i == 0 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------
def plot_class_balance(labels, class_names: Sequence[str] | None = None, ax=None, title: str | None = None) -> Figure:
    """Bar chart of samples per class, counts written on the bars. Negative labels (unlabelled) are not counted."""
    labels = _as_numpy(labels).reshape(-1).astype(np.int64)
    labels = labels[labels >= 0]
    C = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    counts = np.bincount(labels, minlength=C)
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(counts))]
    fig, ax = _new_axes(ax, (max(4.0, 0.5 * len(counts) + 2), 3.5))
    bars = ax.bar(range(len(counts)), counts, color="tab:blue")
    if len(counts) <= 30:
        ax.bar_label(bars, fontsize="small")
    ax.set_xticks(range(len(counts)), names, rotation=45 if max(map(len, names), default=0) > 3 else 0, ha="right")
    ax.set_ylabel("samples")
    ax.set_title(title or f"class balance ({len(labels)} samples, {len(counts)} classes)")
    return fig


def plot_bar_comparison(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    yerr: str | None = None,
    ax=None,
    title: str | None = None,
    colors: Mapping[str, object] | None = None,
    bar_labels: bool | None = None,
) -> Figure:
    """Grouped bars of ``y`` per ``x`` (and per ``hue`` within a group), with ``mean +- std`` error bars.

    Args:
        df: one row per (x, hue) with the mean in ``y`` and the std in column ``yerr``; or several rows per
            (x, hue) (e.g. one per seed) and ``yerr=None``: then the mean and std over rows are drawn.
        x: column of groups on the x axis; ``hue``: column of bars within a group (optional).
        colors: {hue value: matplotlib colour}, to keep one colour per hue across several axes; hues it does not
            name take the next colour of the cycle.
        bar_labels: write each bar's value above it; ``None``: only when there are at most 24 bars.
    """
    columns = [c for c in (x, y, hue, yerr) if c is not None]
    missing = [c for c in columns if c not in df]
    if missing:
        raise ValueError(f"df has no column(s) {missing}; columns are {list(df.columns)}")
    keys = [x] + ([hue] if hue else [])
    if yerr is None and df.duplicated(keys).any():
        table = df.groupby(keys, sort=False)[y].agg(["mean", "std"]).reset_index()
        y, yerr = "mean", "std"
    else:
        table = df
    groups = list(dict.fromkeys(table[x]))
    hues = list(dict.fromkeys(table[hue])) if hue else [None]
    width = 0.8 / len(hues)
    fig, ax = _new_axes(ax, (max(4.5, 1.0 + 0.9 * len(groups) * max(1, len(hues) / 2)), 3.8))
    for k, h in enumerate(hues):
        rows = table[table[hue] == h] if hue else table
        values = rows.set_index(x).reindex(groups)
        positions = np.arange(len(groups)) + (k - (len(hues) - 1) / 2) * width
        errors = values[yerr].to_numpy(dtype=float) if yerr else None
        color = (colors or {}).get(h)
        bars = ax.bar(positions, values[y].to_numpy(dtype=float), width, yerr=errors, capsize=3, label=h,
                      **({"color": color} if color is not None else {}))
        if bar_labels or (bar_labels is None and len(groups) * len(hues) <= 24):
            ax.bar_label(bars, fmt="%.3g", fontsize="x-small", padding=2)
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.set_xlabel(x)
    ax.set_ylabel(y if y != "mean" else f"{columns[1]} (mean +- std)")
    if hue:
        ax.legend(title=hue, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "")
    return fig


def plot_accuracy_vs_time(df: pd.DataFrame, x: str = "seconds", y: str = "knn_monitor", group: str = "label",
                          final: str | None = "probe", floor: str | None = "probe0", ax=None,
                          title: str | None = None) -> Figure:
    """Accuracy against CPU seconds, one line per ``group`` (the mean over seeds, with a min-max band when there
    are several), for the "SSL on a laptop" page.

    Args:
        df: one row per (group, seed, epoch): cumulative train ``x`` and the per-epoch accuracy ``y`` (rows with a
            missing ``y`` are skipped), as :func:`ssltutor.learn.record_rows` writes them.
        final: a column with each run's final accuracy (e.g. the linear probe), drawn as a marker at the run's
            last ``x``; ``None`` draws none. floor: a column with the random-init accuracy, drawn as a dotted line
            per group; ``None`` draws none.
    """
    missing = [c for c in (x, y, group, final, floor) if c is not None and c not in df]
    if missing:
        raise ValueError(f"df has no column(s) {missing}; columns are {list(df.columns)}")
    fig, ax = _new_axes(ax, (6.4, 4.0))
    epoch_key = "epoch" if "epoch" in df else x
    for k, (name, rows) in enumerate(df.groupby(group, sort=False)):
        color = f"C{k % 10}"
        curve = rows.dropna(subset=[y]).groupby(epoch_key)[[x, y]].agg(["mean", "min", "max"])
        if len(curve):
            ax.plot(curve[(x, "mean")], curve[(y, "mean")], color=color, label=str(name), linewidth=1.6)
            if "seed" in rows and rows["seed"].nunique() > 1:
                ax.fill_between(curve[(x, "mean")], curve[(y, "min")], curve[(y, "max")], color=color, alpha=0.2)
        if final is not None:  # a group without a curve (no monitor) is named by its star
            last = rows.sort_values(epoch_key).groupby("seed" if "seed" in rows else group).tail(1)
            ax.scatter(last[x], last[final], color=color, marker="*", s=60, zorder=3,
                       label=None if len(curve) else str(name))
        if floor is not None and rows[floor].notna().any():  # NaN: no random-init probe measured
            ax.axhline(rows[floor].mean(), color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("train time (s, 2 CPU cores)" if x == "seconds" else x)
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", frameon=False, loc="lower right")
    ax.set_title(title or "")
    return fig
