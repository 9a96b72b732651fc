"""Tests for ssltutor.plots: every function returns a Figure with the expected axes, on the Agg backend."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ssltutor import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _main_axes(fig):
    """Axes that are not colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _history(steps=120, steps_per_epoch=10):
    step = np.arange(steps)
    frame = pd.DataFrame({
        "step": step,
        "epoch": step // steps_per_epoch,
        "loss": 2.0 * np.exp(-step / 50) + 0.05 * np.sin(step),
        "lr": np.full(steps, 0.1),
    })
    frame["knn_accuracy"] = np.where(step % steps_per_epoch == steps_per_epoch - 1, step / steps, np.nan)
    return frame


def test_plot_history_one_panel_per_key():
    fig = plots.plot_history(_history(), keys=("loss", "knn_accuracy"), title="run")
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["loss", "knn_accuracy"]
    xs = axes[0].lines[0].get_xdata()
    np.testing.assert_array_equal(xs, np.arange(12))  # per-step rows averaged per epoch
    assert len(axes[1].lines[0].get_xdata()) == 12  # NaN rows dropped
    assert fig._suptitle.get_text() == "run"


def test_plot_history_steps_smoothed_and_runs_compared():
    fig = plots.plot_history(_history(), keys=("loss",), x="step", smooth=10)
    lines = fig.axes[0].lines
    assert len(lines) == 2  # faint raw curve + smoothed curve
    assert np.std(np.diff(lines[1].get_ydata())) < np.std(np.diff(lines[0].get_ydata()))

    fig, ax = plt.subplots()
    out = plots.plot_history({"simclr": _history(), "byol": _history(60)}, keys=("loss", "lr", "missing"), ax=ax)
    assert out is fig and len(fig.axes) == 1
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["simclr loss", "byol loss", "simclr lr", "byol lr"]


def test_plot_history_title_goes_on_the_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    plots.plot_history(_history(), keys=("loss",), ax=right, title="SimCLR")
    assert right.get_title() == "SimCLR" and left.get_title() == ""
    assert fig._suptitle is None  # the figure's other panels keep their own titles


def test_plot_accuracy_matrix_annotates_measured_cells():
    R = np.array([[0.8, np.nan], [0.6, 0.9]])
    fig = plots.plot_accuracy_matrix(R, task_names=["t1", "t2"])
    (ax,) = _main_axes(fig)
    assert sorted(t.get_text() for t in ax.texts) == ["0.60", "0.80", "0.90"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t1", "t2"]
    fig = plots.plot_accuracy_matrix(100 * np.nan_to_num(R))  # percent scale
    assert "100" in " ".join(t.get_text() for t in fig.axes[1].get_yticklabels())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_plot_embeddings(method):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(40)
    features = torch.randn(120, 64, generator=g) + 4 * torch.nn.functional.one_hot(labels, 64).float()
    fig = plots.plot_embeddings(features, labels, ["a", "b", "c"], method=method, max_points=60)
    (ax,) = fig.axes
    assert len(ax.collections) == 3  # one scatter per class
    assert sum(len(c.get_offsets()) for c in ax.collections) == 60  # subsampled
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]


def test_plot_embeddings_tiny_input_caps_perplexity():
    fig = plots.plot_embeddings(torch.randn(5, 8), torch.tensor([0, 1, 0, 1, 0]), method="tsne")
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 5


def test_plot_collapse_reference_line():
    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(500, 16, generator=g)
    collapsed = torch.ones(500, 16) + 1e-4 * torch.randn(500, 16, generator=g)
    fig = plots.plot_collapse({"healthy": healthy, "collapsed": collapsed})
    (ax,) = fig.axes
    healthy_line, collapsed_line, reference = ax.lines
    assert reference.get_ydata()[0] == pytest.approx(1 / 4)  # 1/sqrt(16)
    assert healthy_line.get_ydata().mean() == pytest.approx(0.25, rel=0.1)  # spread on the sphere ~ 1/sqrt(D)
    assert collapsed_line.get_ydata().max() < 1e-3
    assert list(healthy_line.get_ydata()) == sorted(healthy_line.get_ydata(), reverse=True)


def test_plot_image_grid_and_views():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    fig = plots.plot_image_grid(images, labels=torch.arange(10) % 2, class_names=["cat", "dog"], nrow=4)
    assert len(fig.axes) == 12  # 3 rows x 4 columns, the last 2 hidden
    assert [ax.get_title() for ax in fig.axes[:3]] == ["cat", "dog", "cat"]
    assert sum(ax.axison for ax in fig.axes) == 10

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    view = (images[:3].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    fig = plots.plot_views(images[:3], [view, view[:, :, :4, :4]], mean=mean, std=std)
    assert len(fig.axes) == 3 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["original", "view 1", "view 2"]
    shown = fig.axes[1].images[0].get_array()
    np.testing.assert_allclose(shown, images[0].permute(1, 2, 0).numpy() / 255, atol=1e-5)  # unnormalized back
    with pytest.raises(ValueError, match="every view"):
        plots.plot_views(images[:3], [view[:2]])


def test_plot_class_balance_counts():
    fig = plots.plot_class_balance(torch.tensor([0, 0, 1, 2, 2, 2, -1]), ["a", "b", "c"])
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == [2, 1, 3]  # -1 (unlabelled) ignored


def test_plot_bar_comparison_table_and_raw_seeds():
    table = pd.DataFrame({
        "method": ["simclr", "simclr", "byol", "byol"],
        "setting": ["base", "+rot", "base", "+rot"],
        "acc": [0.8, 0.82, 0.81, 0.85],
        "std": [0.01, 0.02, 0.01, 0.01],
    })
    fig = plots.plot_bar_comparison(table, x="method", y="acc", hue="setting", yerr="std")
    (ax,) = fig.axes
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "+rot"]
    assert len(ax.texts) == 4, "4 bars: each labelled with its value"
    fig = plots.plot_bar_comparison(table, x="method", y="acc", hue="setting", yerr="std",
                                    colors={"+rot": "red"}, bar_labels=False)
    (ax,) = fig.axes
    base, rot = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert rot.patches[0].get_facecolor() == matplotlib.colors.to_rgba("red")
    assert base.patches[0].get_facecolor() != rot.patches[0].get_facecolor(), "unnamed hue: next cycle colour"
    assert not ax.texts

    seeds = pd.DataFrame({"method": ["a", "a", "b", "b"], "acc": [0.5, 0.7, 0.9, 0.9]})
    fig = plots.plot_bar_comparison(seeds, x="method", y="acc")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([0.6, 0.9])  # mean over seeds
    with pytest.raises(ValueError, match="no column"):
        plots.plot_bar_comparison(seeds, x="method", y="f1")


def _records():
    rows = []
    for label, seeds in (("simclr", (0, 1)), ("byol", (0,))):
        for seed in seeds:
            for epoch in (1, 2, 3):
                rows.append({"label": label, "seed": seed, "epoch": epoch, "seconds": 10.0 * epoch + seed,
                             "knn_monitor": 0.3 + 0.05 * epoch + 0.01 * seed, "probe": 0.5 + 0.01 * seed,
                             "probe0": 0.4})
    return pd.DataFrame(rows)


def test_plot_accuracy_vs_time_draws_a_line_per_group_with_bands_stars_and_floors():
    fig = plots.plot_accuracy_vs_time(_records(), title="t")
    ax = _main_axes(fig)[0]
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["simclr", "byol"]
    simclr = ax.get_lines()[0]
    assert np.allclose(simclr.get_xdata(), [10.5, 20.5, 30.5]) and np.allclose(simclr.get_ydata(), [0.355, 0.405, 0.455])
    assert len(ax.collections) == 3  # one seed band (simclr has two seeds) + two star markers
    floors = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(floors) == 2 and floors[0].get_ydata()[0] == pytest.approx(0.4)
    assert ax.get_xlabel().startswith("train time") and ax.get_title() == "t"


def test_plot_accuracy_vs_time_skips_missing_curves_and_checks_columns():
    frame = _records().assign(knn_monitor=np.nan)
    ax = _main_axes(plots.plot_accuracy_vs_time(frame, final=None, floor=None))[0]
    assert not [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    with pytest.raises(ValueError, match="no column"):
        plots.plot_accuracy_vs_time(frame.drop(columns="probe"))
