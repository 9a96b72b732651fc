"""The results chapter's data: the ``results.csv`` a batch wrote, summarised as mean +- std over seeds, beside the
numbers the papers report (``results/paper_numbers.csv``).

``results.csv`` has one row per (notebook, dataset, preset, options, seed, variant, metric) (see
:func:`ssltutor.runs.gather_results`); ``paper_numbers.csv`` one row per reported number, with the paper's setting
(backbone, data, epochs) in words, because it is never ours.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plots import plot_bar_comparison
from .runs import RESULT_COLUMNS

GROUP = ["notebook", "dataset", "preset", "options", "variant", "metric"]
PAPER_COLUMNS = ["notebook", "paper", "dataset", "variant", "metric", "value", "std", "setting", "source"]


def load_results(path: str | Path) -> pd.DataFrame:
    """``results.csv`` (or the folder holding it) as a frame; an empty frame when there is none yet."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    frame = pd.read_csv(path, dtype={"options": str}, keep_default_na=False, na_values={"value": [""]})
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame["duration_s"] = pd.to_numeric(frame["duration_s"], errors="coerce")
    return frame


def load_paper_numbers(path: str | Path) -> pd.DataFrame:
    """The papers' reported numbers (``paper_numbers.csv``); values are fractions like ours (0.936 = 93.6 %)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=PAPER_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values={"value": [""], "std": [""]})


def runs_info(folder: str | Path) -> pd.DataFrame:
    """The commands that produced a results folder, with date and machine (its ``batch.json``)."""
    path = Path(folder) / "batch.json"
    if not path.is_file():
        return pd.DataFrame(columns=["command", "date", "machine", "jobs"])
    return pd.DataFrame(json.loads(path.read_text()))[["command", "date", "machine", "jobs"]]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (over seeds, ddof=1; 0 for one seed), number of seeds and mean duration per ``GROUP``."""
    if results.empty:
        return pd.DataFrame(columns=[*GROUP, "mean", "std", "seeds", "duration_s"])
    table = (results.groupby(GROUP, sort=False, dropna=False)
             .agg(mean=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique"),
                  duration_s=("duration_s", "mean"))
             .reset_index())
    table["std"] = table["std"].fillna(0.0)
    return table


def _pm(mean: float, std: float, percent: bool) -> str:
    if pd.isna(mean):
        return ""
    scale = 100.0 if percent else 1.0
    text = f"{mean * scale:.1f}" if percent else f"{mean:.3f}"
    return text if pd.isna(std) else text + (f" ± {std * scale:.1f}" if percent else f" ± {std:.3f}")


def is_percent(metric: str) -> bool:
    """Metrics shown in percent (accuracy-like fractions); others (kappa, forgetting, ...) as they are."""
    return any(k in metric for k in ("accuracy", "precision", "recall", "f1"))


def comparison(summary: pd.DataFrame, paper: pd.DataFrame, notebook: str) -> pd.DataFrame:
    """Ours (mean ± std over seeds) beside the paper's number for the same dataset, variant and metric.

    Rows of the paper with no run of ours (another dataset, e.g. CIFAR-100) stay in the table with ``ours`` empty."""
    ours = summary[summary["notebook"] == notebook].copy()
    theirs = paper[paper["notebook"] == notebook].copy()
    keys = ["dataset", "variant", "metric"]
    ours["ours"] = [_pm(m, s, is_percent(k)) for m, s, k in zip(ours["mean"], ours["std"], ours["metric"])]
    theirs["paper"] = [_pm(m, s, is_percent(k)) for m, s, k in zip(theirs["value"], theirs["std"], theirs["metric"])]
    merged = ours.merge(theirs[[*keys, "paper", "setting"]], on=keys, how="outer")
    merged = merged.rename(columns={"setting": "paper setting"})
    columns = ["dataset", "preset", "options", "variant", "metric", "ours", "seeds", "paper", "paper setting"]
    merged = merged.reindex(columns=columns).fillna({"ours": "", "paper": "", "paper setting": "", "preset": "",
                                                     "options": ""})
    if (merged["options"] == "").all():
        merged = merged.drop(columns="options")
    return merged.sort_values(["dataset", "metric", "variant"]).reset_index(drop=True)


def plot_notebook(summary: pd.DataFrame, paper: pd.DataFrame, notebook: str, metric: str | None = None
                  ) -> Figure | None:
    """Bars of ``metric`` (default: the notebook's first metric) per dataset and variant, mean ± std over seeds;
    the paper's number for the same dataset and variant as a black diamond (its own, larger setting). Without runs
    of ours: the paper's numbers as bars; None when there is neither."""
    ours = summary[summary["notebook"] == notebook]
    theirs = paper[paper["notebook"] == notebook]
    if ours.empty and theirs.empty:
        return None
    metric = metric or (ours if not ours.empty else theirs)["metric"].iloc[0]
    scale = 100.0 if is_percent(metric) else 1.0
    label = f"{metric} (%)" if scale == 100.0 else metric
    theirs = theirs[theirs["metric"] == metric]
    if ours.empty:
        table = theirs.assign(**{label: theirs["value"] * scale, "std": theirs["std"].fillna(0) * scale})
        return plot_bar_comparison(table, x="dataset", y=label, hue="variant", yerr="std",
                                   title=f"{notebook}: the paper's {metric} (no runs of ours yet)")
    ours = ours[ours["metric"] == metric]
    table = ours.assign(**{label: ours["mean"] * scale, "std": ours["std"] * scale})
    fig = plot_bar_comparison(table, x="dataset", y=label, hue="variant", yerr="std",
                              title=f"{notebook}: {metric}, mean ± std over seeds")
    ax = fig.axes[0]
    groups = list(dict.fromkeys(table["dataset"]))
    hues = list(dict.fromkeys(table["variant"]))
    width = 0.8 / max(1, len(hues))
    shown = False
    for _, row in theirs.iterrows():
        if row["dataset"] in groups and row["variant"] in hues:
            x = groups.index(row["dataset"]) + (hues.index(row["variant"]) - (len(hues) - 1) / 2) * width
            ax.plot(x, row["value"] * scale, marker="D", color="black", markersize=6, linestyle="none",
                    label=None if shown else "paper (its setting)")
            shown = True
    if shown:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def plot_overview(summary: pd.DataFrame, metric: str = "accuracy") -> Figure | None:
    """One panel per notebook: every variant's ``metric`` per dataset (mean ± std), the chapters side by side."""
    table = summary[summary["metric"] == metric]
    if table.empty:
        return None
    notebooks = list(dict.fromkeys(table["notebook"]))
    fig, axes = plt.subplots(1, len(notebooks), figsize=(3.2 * len(notebooks), 3.2), layout="constrained",
                             squeeze=False, sharey=True)
    for ax, nb in zip(axes[0], notebooks):
        rows = table[table["notebook"] == nb]
        datasets = list(dict.fromkeys(rows["dataset"]))
        variants = list(dict.fromkeys(rows["variant"]))
        for k, variant in enumerate(variants):
            part = rows[rows["variant"] == variant]
            x = np.array([datasets.index(d) for d in part["dataset"]]) + 0.6 * (k / max(1, len(variants)) - 0.3)
            ax.errorbar(x, part["mean"] * 100, yerr=part["std"] * 100, fmt="o", capsize=3, label=variant)
        ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20)
        ax.set_title(nb, fontsize="small")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="x-small")
    axes[0][0].set_ylabel(f"{metric} (%), mean ± std")
    return fig
