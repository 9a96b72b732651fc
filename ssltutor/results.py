"""The results chapter's data: the ``results.csv`` a batch wrote, summarised as mean +- std over seeds, beside the
numbers the papers report (``results/paper_numbers.csv``).

``results.csv`` has one row per (notebook, dataset, preset, options, seed, variant, metric) (see
:func:`ssltutor.runs.gather_results`); ``paper_numbers.csv`` one row per reported number, with the paper's setting
(backbone, data, epochs) in words, because it is never ours.
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.container import BarContainer
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


# results/paper_numbers.csv, shipped with the package (ssltutor/paper_numbers.csv links to it)
PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")


def load_paper_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """The papers' reported numbers (``paper_numbers.csv``; default :data:`PAPER_NUMBERS`, the repository's
    ``results/paper_numbers.csv``); values are fractions like ours (0.936 = 93.6 %). A missing file given by
    path reads as an empty frame."""
    path = Path(path) if path is not None else PAPER_NUMBERS
    if not path.is_file():
        return pd.DataFrame(columns=PAPER_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values={"value": [""], "std": [""]})


def paper_numbers(notebook: str, path: str | Path | None = None, percent: bool = True) -> pd.DataFrame:
    """The rows of ``notebook`` (e.g. ``"05_continual_ssl_cassle"``) in :func:`load_paper_numbers`, values (and
    stds) in % with ``percent``: what a chapter prints beside its own run. Raises a ValueError naming the
    notebooks the file has when it has none for ``notebook``."""
    frame = load_paper_numbers(path)
    rows = frame[frame["notebook"] == notebook].copy()
    if rows.empty:
        known = ", ".join(sorted(frame["notebook"].unique())) or "none"
        raise ValueError(f"no paper numbers for notebook {notebook!r} in {path or PAPER_NUMBERS}: it has {known}")
    if percent:
        rows[["value", "std"]] = 100 * rows[["value", "std"]].apply(pd.to_numeric, errors="coerce")
    return rows.reset_index(drop=True)


def runs_info(folder: str | Path) -> pd.DataFrame:
    """The commands that produced a results folder, with date and machine (its ``batch.json``)."""
    path = Path(folder) / "batch.json"
    if not path.is_file():
        return pd.DataFrame(columns=["command", "date", "machine", "jobs"])
    return pd.DataFrame(json.loads(path.read_text()))[["command", "date", "machine", "jobs"]]


def runs_matrix(results: pd.DataFrame) -> pd.DataFrame:
    """What a results folder holds, one row per (notebook, dataset): the seeds run, the train and test images each
    run used (``train_images`` / ``test_images`` of ``results.csv``; several values joined by "/"), the minutes of
    one run (mean over seeds of the notebook's wall time) and the hours of all of them."""
    columns = ["notebook", "dataset", "seeds", "train_images", "test_images", "minutes_per_run", "hours"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    runs = results.drop_duplicates("run")

    def images(values: pd.Series) -> str:
        known = [str(int(v)) for v in dict.fromkeys(pd.to_numeric(values, errors="coerce").dropna())]
        return "/".join(known) or "not recorded"

    table = runs.groupby(["notebook", "dataset"], sort=True).agg(
        seeds=("seed", lambda s: ",".join(str(int(x)) for x in sorted(set(s)))),
        train_images=("train_images", images) if "train_images" in runs else ("seed", lambda s: "not recorded"),
        test_images=("test_images", images) if "test_images" in runs else ("seed", lambda s: "not recorded"),
        minutes_per_run=("duration_s", lambda d: d.mean() / 60), hours=("duration_s", lambda d: d.sum() / 3600))
    return table.reset_index()[columns]


def markdown_table(frame: pd.DataFrame, index: bool = False) -> list[str]:
    """``frame`` as the lines of a GitHub markdown table (header, rule, one line per row), cells as ``str`` gives
    them; ``index``: the index as the first column, headed by its name. Needs no ``tabulate``."""
    cols = [str(c) for c in frame.columns]
    head = [frame.index.name or "", *cols] if index else cols
    rows = [[str(i), *map(str, row)] if index else list(map(str, row)) for i, row in zip(frame.index, frame.values)]
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


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
    """Metrics shown in percent: accuracy-like fractions and the continual-learning measures made of accuracy
    differences (forgetting, backward / forward transfer: points of accuracy); others (kappa, seconds, step-time
    ratios, ...) as they are."""
    return any(k in metric for k in ("acc", "precision", "recall", "f1", "linear", "knn", "probe", "forgetting",
                                     "transfer"))


def select(frame: pd.DataFrame, notebook: str, metrics: list[str] | None = None,
           variants: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``notebook`` with the given metrics and variants; variants are names or shell patterns
    (``"simclr*"``, ``"*"``), rows ordered by the first pattern they match. By default every metric and every
    variant except sweeps and checkpoints (names with ``@``, e.g. ``rt@0.1``)."""
    rows = frame[frame["notebook"] == notebook]
    if metrics is not None:
        rows = rows[rows["metric"].isin(metrics)]
    if variants is None:
        return rows[~rows["variant"].astype(str).str.contains("@")]
    rank = rows["variant"].astype(str).map(
        lambda v: next((i for i, pattern in enumerate(variants) if fnmatch.fnmatchcase(v, pattern)), None))
    rows = rows.assign(_rank=rank).dropna(subset=["_rank"])
    return rows.sort_values("_rank", kind="stable").drop(columns="_rank")


def comparison(summary: pd.DataFrame, paper: pd.DataFrame, notebook: str, metrics: list[str] | None = None,
               variants: list[str] | None = None) -> pd.DataFrame:
    """One row per dataset and variant: ours as mean ± std over seeds for each metric, and beside it the paper's
    number for the same dataset, variant and metric (column ``<metric> (paper)``) where it reports one.

    Datasets only the paper used (e.g. CIFAR-100) keep their rows with our columns empty. Accuracy-like metrics are
    in percent."""
    ours = select(summary, notebook, metrics, variants).copy()
    theirs = select(paper, notebook, metrics, variants).copy()
    if ours.empty and theirs.empty:
        return pd.DataFrame({"note": [f"no runs of {notebook} in this results folder yet, and no paper numbers"]})
    index = ["dataset", "variant"]
    if ours["preset"].nunique() > 1:
        index.insert(1, "preset")
    if ours.groupby(["dataset", "variant"])["options"].nunique().gt(1).any():  # runs differ by more than dataset
        index.insert(-1, "options")
    ours["text"] = [_pm(m, s, is_percent(k)) for m, s, k in zip(ours["mean"], ours["std"], ours["metric"])]
    theirs["text"] = [_pm(m, s, is_percent(k)) for m, s, k in zip(theirs["value"], theirs["std"], theirs["metric"])]
    order = list(dict.fromkeys([*(metrics or []), *ours["metric"], *theirs["metric"]]))
    rows = list(dict.fromkeys([*map(tuple, ours[["dataset", "variant"]].values),
                               *map(tuple, theirs[["dataset", "variant"]].values)]))
    table = pd.DataFrame(rows, columns=["dataset", "variant"])
    if not ours.empty:
        wide = ours.pivot_table(index=index, columns="metric", values="text", aggfunc="first").reset_index()
        seeds = ours.groupby(index, sort=False)["seeds"].max().rename("seeds").reset_index()
        table = table.merge(wide.merge(seeds, on=index), on=["dataset", "variant"], how="left")
    if not theirs.empty:
        wide = theirs.pivot_table(index=["dataset", "variant"], columns="metric", values="text", aggfunc="first")
        table = table.merge(wide.add_suffix(" (paper)").reset_index(), on=["dataset", "variant"], how="left")
    columns = [c for c in index if c in table] + (["seeds"] if "seeds" in table else [])
    for metric in order:
        columns += [c for c in (metric, f"{metric} (paper)") if c in table]
    table = table[columns].astype(object)
    if "seeds" in table:
        table["seeds"] = table["seeds"].map(lambda n: "" if pd.isna(n) else int(n))
    table = table.fillna("")
    return table.sort_values("dataset", kind="stable").set_index([c for c in index if c in table])


def paper_sources(paper: pd.DataFrame) -> pd.DataFrame:
    """Where the papers' numbers come from: one row per paper and setting, with its datasets and source."""
    if paper.empty:
        return pd.DataFrame(columns=["paper", "datasets", "setting", "source"])
    return (paper.groupby(["paper", "setting", "source"], sort=False)["dataset"]
            .agg(lambda d: ", ".join(dict.fromkeys(d))).rename("datasets").reset_index()
            [["paper", "datasets", "setting", "source"]])


def plot_notebook(summary: pd.DataFrame, paper: pd.DataFrame, notebook: str, metrics: list[str] | None = None,
                  variants: list[str] | None = None) -> Figure | None:
    """Bars per dataset of each variant's ``metrics`` (default: the notebook's first metric), mean ± std over seeds,
    one panel per metric (each on its own scale, in percent for accuracy-like metrics), every variant in one colour
    across the panels; the paper's number for the same dataset, variant and metric as a black diamond (its own,
    larger setting). Without runs of ours: the paper's numbers as bars; None when neither."""
    ours = select(summary, notebook, metrics, variants)
    theirs = select(paper, notebook, metrics, variants)
    if ours.empty and theirs.empty:
        return None
    source = ours if not ours.empty else theirs
    metrics = [m for m in (metrics or [source["metric"].iloc[0]]) if (source["metric"] == m).any()]
    hues = list(dict.fromkeys(source["variant"]))
    colors = dict(zip(hues, plt.get_cmap("tab10" if len(hues) <= 10 else "tab20").colors))
    groups = list(dict.fromkeys(source["dataset"]))
    width_in = min(max(3.0 + 0.32 * len(groups) * len(hues), 7.0), 10.5)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(width_in, 0.4 + 2.7 * len(metrics)), layout="constrained",
                             squeeze=False)
    mean = "mean" if not ours.empty else "value"
    for ax, metric in zip(axes[:, 0], metrics):
        scale = 100.0 if is_percent(metric) else 1.0
        label = metric + (" (%)" if scale == 100.0 else "")
        rows = source[source["metric"] == metric]
        table = rows.assign(**{label: rows[mean] * scale, "_std": rows["std"].fillna(0) * scale})
        plot_bar_comparison(table, x="dataset", y=label, hue="variant", yerr="_std", ax=ax, colors=colors,
                            bar_labels=False)
        ax.get_legend().remove()
        ax.set_xlabel("")
        if ours.empty:
            continue
        # the paper's number on its bar: the bar of (variant, dataset) is the container's patch at that group
        bar_of = {(c.get_label(), d): p for c in ax.containers if isinstance(c, BarContainer)
                  for d, p in zip(dict.fromkeys(rows["dataset"]), c.patches)}
        for _, row in theirs[theirs["metric"] == metric].iterrows():
            patch = bar_of.get((row["variant"], row["dataset"]))
            if patch is not None:
                ax.plot(patch.get_x() + patch.get_width() / 2, row["value"] * scale, marker="D", color="black",
                        markersize=6, linestyle="none", label="paper (its setting)")
    handles = {}
    for ax in axes[:, 0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    if "paper (its setting)" in handles:  # the variants first, the paper's marker last
        handles["paper (its setting)"] = handles.pop("paper (its setting)")
    axes[0, 0].legend(handles.values(), handles.keys(), title="variant", fontsize="small", loc="upper left",
                      bbox_to_anchor=(1.01, 1), frameon=False)
    axes[-1, 0].set_xlabel("dataset")
    axes[0, 0].set_title(f"{notebook}: mean ± std over seeds" if not ours.empty
                         else f"{notebook}: the paper's numbers (no runs of ours yet)")
    return fig


# ---------------------------------------------------------------------------------------------------- sweeps, curves
def _level(text: str) -> float:
    """``"0.25"`` -> 0.25, ``"4ep"`` -> 4.0: the number a sweep's level starts with."""
    import re

    match = re.match(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text)
    if match is None:
        raise ValueError(f"sweep level {text!r} does not start with a number (variants look like 'fkt@0.25')")
    return float(match.group(0))


def sweep(results: pd.DataFrame, notebook: str, metric: str, datasets: list[str] | None = None) -> pd.DataFrame:
    """A chapter's sweep (variants named ``base@level``: FKT's ``fkt@0.05`` labelled fraction, rotation's
    ``simclr@4ep`` budget) on ``metric``: mean, std (ddof 1, NaN for one seed) and seeds per (dataset, base,
    level), levels as numbers, sorted."""
    rows = results[(results["notebook"] == notebook) & (results["metric"] == metric)
                   & results["variant"].astype(str).str.contains("@")]
    if datasets is not None:
        rows = rows[rows["dataset"].isin(datasets)]
    if rows.empty:
        raise ValueError(f"no sweep (variants 'base@level') of {notebook} with metric {metric!r} in these results")
    parts = rows["variant"].astype(str).str.split("@", n=1, expand=True)
    rows = rows.assign(base=parts[0], level=parts[1].map(_level), value=pd.to_numeric(rows["value"], errors="coerce"))
    table = (rows.groupby(["dataset", "base", "level"], sort=False)
             .agg(mean=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique")).reset_index())
    return table.sort_values(["dataset", "base", "level"], kind="stable").reset_index(drop=True)


def plot_sweep(table: pd.DataFrame, xlabel: str, ylabel: str, logx: bool = False, title: str | None = None
               ) -> Figure:
    """:func:`sweep`'s table as one panel per dataset (at most two side by side, 4.2 x 3.4 in each, legible at the
    book's page width): a line per
    base with the seed standard deviation as error bars, in percent for accuracy-like ``ylabel`` metrics."""
    datasets = list(dict.fromkeys(table["dataset"]))
    cols = min(2, len(datasets))
    rows_n = math.ceil(len(datasets) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), layout="constrained",
                             squeeze=False)
    scale = 100.0 if is_percent(ylabel) else 1.0
    for ax, dataset in zip(axes.flat, datasets):
        part = table[table["dataset"] == dataset]
        for k, (base, line) in enumerate(part.groupby("base", sort=False)):
            ax.errorbar(line["level"], line["mean"] * scale, yerr=line["std"].fillna(0) * scale, marker="o",
                        capsize=3, color=f"C{k % 10}", label=base)
        ax.set_xscale("log" if logx else "linear")
        ax.set_title(dataset)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel + (" (%)" if scale == 100.0 else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def load_histories(path: str | Path) -> pd.DataFrame:
    """``histories.csv`` (or the folder holding it; :func:`ssltutor.runs.gather_histories`) as a frame; an empty
    one when there is none."""
    from .runs import HISTORY_COLUMNS

    path = Path(path)
    path = path / "histories.csv" if path.is_dir() else path
    if not path.is_file():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})


def history_curves(histories: pd.DataFrame, notebook: str, dataset: str, metric: str, time: str = "time_s",
                   variants: list[str] | None = None) -> pd.DataFrame:
    """Per-epoch curves of ``metric`` for one chapter and dataset, with each run's cumulative ``time`` (the
    per-epoch seconds its history records) as ``seconds``: columns ``label`` (the variant), ``seed``, ``epoch``,
    ``seconds`` and ``metric``, the shape :func:`ssltutor.plots.plot_accuracy_vs_time` draws (accuracy against
    CPU seconds, seed bands)."""
    rows = histories[(histories["notebook"] == notebook) & (histories["dataset"] == dataset)]
    if variants is not None:
        rows = rows[rows["variant"].isin(variants)]
    # a history's own "epoch" / "seed" columns are the index already
    rows = rows[~rows["metric"].isin(["variant", "seed", "epoch"])]
    wide = rows.pivot_table(index=["variant", "seed", "epoch"], columns="metric", values="value").reset_index()
    missing = [m for m in (metric, time) if m not in wide]
    if wide.empty or missing:
        have = ", ".join(sorted(rows["metric"].unique())) or "none"
        raise ValueError(f"no per-epoch {' and '.join(missing) or metric} for {notebook} on {dataset} (history "
                         f"metrics: {have})")
    wide = wide.sort_values(["variant", "seed", "epoch"])
    wide["seconds"] = wide.groupby(["variant", "seed"])[time].cumsum()
    order = variants or list(dict.fromkeys(rows["variant"]))
    wide["variant"] = pd.Categorical(wide["variant"], order)
    wide = wide.sort_values(["variant", "seed", "epoch"]).rename(columns={"variant": "label"})
    return wide.assign(label=wide["label"].astype(str))[["label", "seed", "epoch", "seconds", metric]]


def accuracy_matrix(histories: pd.DataFrame, notebook: str, dataset: str, variant: str
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """A continual run's accuracy matrix R (after task i, on task j) read back from ``histories.csv``
    (:meth:`ssltutor.studies.cassle.ContinualResult.history`): the mean and std (ddof 1; NaN for one seed) over
    seeds of every cell, and the number of seeds."""
    rows = histories[(histories["notebook"] == notebook) & (histories["dataset"] == dataset)
                     & (histories["variant"] == variant) & histories["metric"].astype(str).str.startswith("acc_task")]
    if rows.empty:
        raise ValueError(f"no accuracy matrix of {variant!r} for {notebook} on {dataset} in these histories")
    rows = rows.assign(task=rows["metric"].str.removeprefix("acc_task").astype(int))
    cells = rows.groupby(["epoch", "task"])["value"].agg(["mean", "std"])
    T = int(rows["task"].max())
    mean = cells["mean"].unstack().reindex(index=range(1, T + 1), columns=range(1, T + 1)).to_numpy()
    std = cells["std"].unstack().reindex(index=range(1, T + 1), columns=range(1, T + 1)).to_numpy()
    return mean, std, int(rows["seed"].nunique())


# ---------------------------------------------------------------------------------------------------- the verdicts
@dataclass(frozen=True)
class Claim:
    """A paper's claim as a comparison of two of a chapter's variants on one metric: ``better`` beats ``worse``
    (by a higher value, or a lower one with ``higher=False``). ``paper_dataset``, ``paper_better``,
    ``paper_worse`` and ``paper_metric`` name the paper's own number in ``paper_numbers.csv`` where its names
    differ from ours (default: ours; ``paper_dataset=None``: the dataset of our run)."""

    notebook: str
    better: str
    worse: str
    metric: str
    statement: str
    higher: bool = True
    paper_dataset: str | None = None
    paper_better: str | None = None
    paper_worse: str | None = None
    paper_metric: str | None = None


def seed_comparison(results: pd.DataFrame, notebook: str, dataset: str, better: str, worse: str, metric: str
                    ) -> dict[str, float]:
    """Two variants of ``notebook`` on ``dataset`` and ``metric`` over seeds (rows of ``results.csv``): each one's
    mean and std (ddof 1) over its seeds, their difference ``better - worse`` and the pooled seed standard
    deviation ``sqrt((std_better**2 + std_worse**2) / 2)``; ``seeds`` = the smaller of the two seed counts."""
    rows = results[(results["notebook"] == notebook) & (results["dataset"] == dataset)
                   & (results["metric"] == metric)]
    per_seed = {v: pd.to_numeric(rows[rows["variant"] == v]["value"], errors="coerce").groupby(rows["seed"]).mean()
                .dropna() for v in (better, worse)}
    missing = [v for v, values in per_seed.items() if values.empty]
    if missing:
        have = ", ".join(sorted(rows["variant"].astype(str).unique())) or "none"
        raise ValueError(f"no {metric!r} of variant(s) {', '.join(missing)} for {notebook} on {dataset} in these "
                         f"results (variants with that metric: {have})")
    b, w = per_seed[better], per_seed[worse]
    std_b, std_w = (float(x.std(ddof=1)) if len(x) > 1 else math.nan for x in (b, w))
    return {"better_mean": float(b.mean()), "better_std": std_b, "worse_mean": float(w.mean()), "worse_std": std_w,
            "difference": float(b.mean() - w.mean()), "pooled_std": math.sqrt((std_b ** 2 + std_w ** 2) / 2),
            "seeds": min(len(b), len(w))}


def verdict(results: pd.DataFrame, claim: Claim, dataset: str, paper: pd.DataFrame | None = None) -> str:
    """One sentence, computed from ``results`` (:func:`seed_comparison`): whether the paper's direction holds on
    ``dataset`` at this scale (the difference of means in the claimed direction beyond the pooled seed standard
    deviation: holds; beyond it the other way: reversed; else: not resolved), with both means, the difference and
    the spread, and the paper's own two numbers beside ours (``paper``: :func:`load_paper_numbers`; default the
    repository's file) or a note that it reports none we could use."""
    c = seed_comparison(results, claim.notebook, dataset, claim.better, claim.worse, claim.metric)
    percent = is_percent(claim.metric)
    scale, unit = (100.0, " points") if percent else (1.0, "")
    status = {"holds": "holds", "reversed": "is reversed",
              "not resolved": "is not resolved (the difference is within the seed spread)",
              "one seed": "cannot be judged (one seed: no spread to compare with)"}[_status(c, claim.higher)]

    def pm(mean, std):
        return f"{mean * scale:.1f}" + ("" if math.isnan(std) else f" ± {std * scale:.1f}")

    sentence = (f"On {dataset} ({c['seeds']} seeds) the paper's direction, {claim.statement}, {status}: "
                f"{claim.better} {pm(c['better_mean'], c['better_std'])} vs {claim.worse} "
                f"{pm(c['worse_mean'], c['worse_std'])} {claim.metric} (difference {c['difference'] * scale:+.1f}"
                f"{unit}, pooled seed std {c['pooled_std'] * scale:.1f}).")
    return sentence + " " + _paper_says(claim, dataset, load_paper_numbers() if paper is None else paper)


def _status(c: dict, higher: bool = True) -> str:
    """"holds" / "reversed" (the difference in the claimed direction, higher or lower, beyond +- the pooled seed
    std), "not resolved" (within it) or "one seed"."""
    gain = c["difference"] if higher else -c["difference"]
    if c["seeds"] < 2:
        return "one seed"
    if gain > c["pooled_std"]:
        return "holds"
    return "reversed" if gain < -c["pooled_std"] else "not resolved"


def claims_table(results: pd.DataFrame, claims: dict[str, Claim] | None = None, paper: pd.DataFrame | None = None
                 ) -> pd.DataFrame:
    """"The paper says / we measured": one row per claim (default :data:`CLAIMS`) and dataset it has runs on: the
    claim, the paper's two numbers (where ``paper_numbers.csv`` has them), ours as mean +- std over seeds, the
    difference and pooled seed std, and the verdict (:func:`verdict`'s rule). Accuracy-like metrics in %."""
    paper = load_paper_numbers() if paper is None else paper
    rows = []
    for claim in (CLAIMS if claims is None else claims).values():
        ran = results[(results["notebook"] == claim.notebook) & (results["metric"] == claim.metric)]
        for dataset in dict.fromkeys(ran["dataset"]):
            try:
                c = seed_comparison(results, claim.notebook, dataset, claim.better, claim.worse, claim.metric)
            except ValueError:
                continue  # this dataset lacks one of the two variants
            scale = 100.0 if is_percent(claim.metric) else 1.0
            says = _paper_says(claim, dataset, paper)
            rows.append({"chapter": claim.notebook, "claim": claim.statement, "dataset": dataset,
                         "metric": claim.metric, "seeds": c["seeds"],
                         "paper says": says.removeprefix("The paper: ").rstrip(".") if says.startswith("The paper:")
                         else "no number retrievable",
                         "we measured": f"{claim.better} {_pm(c['better_mean'], c['better_std'], scale == 100)} vs "
                                        f"{claim.worse} {_pm(c['worse_mean'], c['worse_std'], scale == 100)}",
                         "difference": f"{c['difference'] * scale:+.1f} ± {c['pooled_std'] * scale:.1f}",
                         "verdict": _status(c, claim.higher)})
    return pd.DataFrame(rows)


def comparisons(results: pd.DataFrame, notebook: str, pairs: list[tuple[str, str]], metric: str,
                higher: bool = True) -> pd.DataFrame:
    """Every (better, worse) pair of ``notebook``'s variants on ``metric``, per dataset, by :func:`verdict`'s rule:
    the two means +- std over seeds, the difference of means, the pooled seed std and the status (holds /
    reversed / not resolved / one seed). A pair written ``("fkt@*", "rt@*")`` expands over every level of the
    sweep the first base has (``fkt@0.01`` vs ``rt@0.01``, ...); pairs a dataset lacks are left out.
    Accuracy-like metrics in %. The table behind a chapter's "where does it help" reading."""
    rows = results[(results["notebook"] == notebook) & (results["metric"] == metric)]
    percent = is_percent(metric)
    scale = 100.0 if percent else 1.0
    out = []
    for dataset in dict.fromkeys(rows["dataset"]):
        have = set(rows[rows["dataset"] == dataset]["variant"].astype(str))
        for better, worse in pairs:
            if better.endswith("@*") and worse.endswith("@*"):
                base, other = better[:-2], worse[:-2]
                levels = sorted({v.split("@", 1)[1] for v in have if v.startswith(base + "@")}, key=_level)
                expanded = [(f"{base}@{lv}", f"{other}@{lv}", lv) for lv in levels]
            else:
                expanded = [(better, worse, "")]
            for b, w, level in expanded:
                if b not in have or w not in have:
                    continue
                c = seed_comparison(results, notebook, dataset, b, w, metric)
                out.append({"dataset": dataset, "level": level, "better": b, "worse": w, "seeds": c["seeds"],
                            "better mean": c["better_mean"] * scale, "better std": c["better_std"] * scale,
                            "worse mean": c["worse_mean"] * scale, "worse std": c["worse_std"] * scale,
                            "difference": c["difference"] * scale, "pooled std": c["pooled_std"] * scale,
                            "status": _status(c, higher)})
    columns = ["dataset", "level", "better", "worse", "seeds", "better mean", "better std", "worse mean",
               "worse std", "difference", "pooled std", "status"]
    numbers = {c: float for c in columns[5:-1]} | {"seeds": int}
    return pd.DataFrame(out, columns=columns).astype(numbers)


def comparisons_sentence(table: pd.DataFrame, what: str, unit: str = " points") -> str:
    """One sentence from :func:`comparisons`' table: in how many comparisons ``what`` holds, is reversed or is not
    resolved, naming each one that holds or is reversed with its difference +- pooled seed std (and its metric,
    where the table has a ``metric`` column: several metrics' comparisons concatenated)."""
    if table.empty:
        return f"No runs compare {what} yet."

    def named(rows: pd.DataFrame) -> str:  # with the metric where the table joins several
        return "; ".join(f"{r.dataset} {r.better} vs {r.worse}" + (f" ({r.metric})" if "metric" in rows else "")
                         + f" {r.difference:+.1f} ± {r.pooled_std:.1f}{unit}"
                         for r in rows.rename(columns=lambda c: c.replace(" ", "_")).itertuples())

    parts = []
    for status, word in (("holds", "holds"), ("reversed", "is reversed")):
        rows = table[table["status"] == status]
        if len(rows):
            parts.append(f"{word} in {len(rows)} ({named(rows)})")
    unresolved = int((table["status"] == "not resolved").sum())
    one_seed = int((table["status"] == "one seed").sum())
    if unresolved:
        parts.append(f"is within the seed spread in {unresolved}")
    if one_seed:
        parts.append(f"has one seed only in {one_seed}")
    return f"Of {len(table)} comparisons, {what} " + ", ".join(parts) + "."


def _paper_says(claim: Claim, dataset: str, paper: pd.DataFrame) -> str:
    rows = paper[(paper["notebook"] == claim.notebook) & (paper["dataset"] == (claim.paper_dataset or dataset))
                 & (paper["metric"] == (claim.paper_metric or claim.metric))]
    values = {v: rows[rows["variant"] == name]["value"] for v, name in
              (("better", claim.paper_better or claim.better), ("worse", claim.paper_worse or claim.worse))}
    if any(v.empty for v in values.values()):
        return "The paper gives no number for this comparison that we could retrieve."
    setting = rows["setting"].iloc[0]
    b, w = (float(values[k].iloc[0]) for k in ("better", "worse"))
    scale = 100.0 if is_percent(claim.paper_metric or claim.metric) else 1.0
    return (f"The paper: {b * scale:.1f} vs {w * scale:.1f} ({claim.paper_dataset or dataset}; {setting}).")


# What each chapter tests, stated once (the chapters and the results chapter print :func:`verdict` of these)
CLAIMS: dict[str, Claim] = {
    "02_functional_knowledge_transfer": Claim(
        "02_functional_knowledge_transfer", "fkt", "rt", "accuracy",
        "joint SSL + supervised training (FKT) beats two-stage representational transfer (RT)"),
    "03_internal_pretext_task": Claim(
        "03_internal_pretext_task", "internal", "supervised", "accuracy",
        "the internal pretext task raises supervised accuracy"),
    "04_rotation_boosted_ssl": Claim(
        "04_rotation_boosted_ssl", "simclr_rot@1ep", "simclr@1ep", "knn",
        "rotation prediction as an auxiliary task speeds up SSL (higher accuracy after few epochs)"),
    "05_continual_ssl_cassle": Claim(
        "05_continual_ssl_cassle", "simclr/cassle", "simclr/fine_tune", "average_accuracy",
        "CaSSLe's predictive distillation beats plain continual fine-tuning", paper_dataset="cifar100",
        paper_metric="accuracy"),
    "06_distill_on_the_go": Claim(
        "06_distill_on_the_go", "small in pair", "small alone", "linear",
        "the small model learns better in a pair with a larger peer than alone"),
}


@dataclass
class FullRuns:
    """A chapter's full-run section, computed from committed results (:func:`full_runs`): the table of ours beside
    the paper's numbers (:func:`comparison`), its figure (:func:`plot_notebook`) and, per dataset, the verdict
    sentence on the chapter's claim (:func:`verdict`)."""

    notebook: str
    table: pd.DataFrame
    figure: Figure | None
    verdicts: dict[str, str]
    runs: int

    def markdown(self) -> str:
        """The verdicts as a markdown list (display it with ``IPython.display.Markdown``)."""
        if not self.verdicts:
            return f"No full runs of `{self.notebook}` in this results folder yet."
        return "\n".join(f"* {sentence}" for sentence in self.verdicts.values())


def full_runs(results: pd.DataFrame | str | Path, notebook: str, metrics: list[str] | None = None,
              variants: list[str] | None = None, claim: Claim | None = None, paper: pd.DataFrame | None = None
              ) -> FullRuns:
    """The one function behind every chapter's full-run section: ``results`` (a ``results.csv``, its folder or
    the frame) for ``notebook``, summarised over seeds, beside the paper's numbers, with the figure and one
    verdict per dataset on ``claim`` (default :data:`CLAIMS` [notebook]). Nothing in it is typed by hand."""
    frame = results if isinstance(results, pd.DataFrame) else load_results(results)
    paper = load_paper_numbers() if paper is None else paper
    claim = CLAIMS.get(notebook) if claim is None else claim
    mine = frame[frame["notebook"] == notebook]
    summary = summarize(mine)
    verdicts = {}
    if claim is not None:
        for dataset in dict.fromkeys(mine["dataset"]):
            try:
                verdicts[dataset] = verdict(mine, claim, dataset, paper)
            except ValueError:
                continue  # a dataset without both variants of the claim
    figure = plot_notebook(summary, paper, notebook, metrics, variants) if not mine.empty else None
    return FullRuns(notebook, comparison(summary, paper, notebook, metrics, variants), figure, verdicts,
                    int(mine["run"].nunique()) if "run" in mine else 0)
