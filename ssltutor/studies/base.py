"""What every study does around its method, written once.

* :func:`load_experiment_data`: the chosen dataset at the preset's size, capped (:func:`cap`) at its sizes;
* :func:`seeded_backbone`: the preset's backbone drawn from a seed, so every variant of a seed starts from the same
  weights;
* :func:`fit_options` / :func:`fit_with_preset`: ``ssltutor.train.fit`` with the preset's optimisation keys;
* :class:`VariantRun`: what every study's ``run_variant`` returns (the trained method, its metrics, its history);
* :func:`run_grid`: variants x seeds, one tidy row per run and metric; :func:`summarize`: mean and std over seeds;
* :func:`write_metrics`: ``metrics.json`` in the one format that ``ssltutor batch`` gathers into ``results.csv``.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch

from .. import __version__
from ..data import ImageDataset, load, stratified_split
from ..methods import Method
from ..models import Backbone, create_backbone
from ..presets import preset as get_preset
from ..train import History, fit, resolve_device


def cap(data: ImageDataset, limit: int | None, seed: int) -> ImageDataset:
    """A stratified subset of at most ``limit`` images (``None`` keeps all)."""
    if limit is None or len(data) <= limit:
        return data
    if (data.labels < 0).any():
        return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:limit])
    _, keep = stratified_split(data.labels, val_fraction=limit / len(data), seed=seed)
    return data.subset(keep)


def load_experiment_data(dataset: str, data_root: str | None = None, preset: str | dict = "cpu", seed: int = 0,
                         image_size: int | None = None, test_split: str = "test") -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``dataset`` at the preset's image size, capped by ``max_train``/``max_test``.
    ``preset``: a preset name or settings already resolved (``ssltutor.presets.preset``)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    size = image_size or p["image_size"]
    train = load(dataset, root=data_root, split="train", size=size)
    test = load(dataset, root=data_root, split=test_split, size=size)
    return cap(train, p["max_train"], seed), cap(test, p["max_test"], seed)


def seeded_backbone(settings: dict, seed: int, **options) -> Backbone:
    """The preset's ``backbone`` (``width`` for the convnets, default 32) drawn after ``torch.manual_seed(seed)``:
    the same seed gives the same weights, so the variants of one seed differ only in what they train.
    ``options`` go to :func:`ssltutor.models.create_backbone` (``stem_padding``, ``cifar_stem``, ``pretrained``)."""
    torch.manual_seed(seed)
    return create_backbone(settings["backbone"], width=settings["width"] or 32, **options)


# The preset keys that are ``fit`` options (``ssltutor.presets.Settings`` gives each fit's own default).
FIT_KEYS = ("batch_size", "optimizer", "lr", "weight_decay", "momentum", "warmup_epochs", "min_lr", "schedule",
            "precision", "channels_last", "optimizer_options", "exclude_bias_norm")


def fit_options(settings: dict, method: str | None = None, epochs: int | None = None, stage: str = "") -> dict:
    """``fit`` options from a preset: each of :data:`FIT_KEYS`, as ``stage + key`` where the preset has that key
    and sets it (FKT's ``pretrain_lr``, ...), else as ``key``; then the preset's ``method_overrides[method]`` (a
    method's own lr, LARS options, ...). With ``epochs``, warmup is cut to at most ``epochs - 1`` so that a short
    run still reaches its peak learning rate."""
    options = {key: settings[key] for key in FIT_KEYS}
    if stage:
        options.update({key: settings[stage + key] for key in FIT_KEYS
                        if stage + key in settings and settings[stage + key] is not None})
    options.update(settings["method_overrides"].get(method, {}))
    if epochs is not None and "warmup_epochs" in options:
        options["warmup_epochs"] = min(options["warmup_epochs"], epochs - 1)
    return options


def fit_with_preset(method: Method, data: ImageDataset, settings: dict, *, epochs: int, name: str | None = None,
                    stage: str = "", seed: int = 0, device=None, progress: bool = False, callbacks=(),
                    batch_size: int | None = None, **fit_kwargs) -> History:
    """``fit(method, data)`` for ``epochs`` with :func:`fit_options` of ``settings`` (``name``: the method's key in
    ``method_overrides``; ``stage``: FKT's key prefix); ``batch_size`` (default the preset's) never larger than the
    data."""
    options = fit_options(settings, name, epochs, stage)
    options["batch_size"] = min(batch_size or options["batch_size"], len(data))
    return fit(method, data, epochs=epochs, device=device, seed=seed, progress=progress, callbacks=callbacks,
               **options, **fit_kwargs)


@dataclass
class VariantRun:
    """One trained variant of a study: the shape every study's ``run_variant`` returns.

    variant: its name in the study; seed: the seed of its backbone and run; method: the trained method;
    metrics: {name: value} scores of the run, the numbers that summaries and ``metrics.json`` take; history: one
    row per epoch of training (None where the study keeps one per task in ``result``); seconds: training wall
    time; result: the study's own record where it has one (CaSSLe: the ``ContinualResult`` with the accuracy
    matrix; FKT: the selection details)."""

    variant: str
    seed: int
    method: Method
    metrics: dict[str, float | None]
    history: pd.DataFrame | None = None
    seconds: float | None = None
    result: object = None


def run_grid(run: Callable[[str, int], Iterable[dict]], variants: Sequence[str], seeds: Sequence[int],
             on_result: Callable[[list[dict]], None] | None = None) -> pd.DataFrame:
    """Variants x seeds (seed-major: every variant of a seed, then the next seed) as one tidy frame:
    ``run(variant, seed)`` yields the rows of one run; ``on_result`` gets each run's rows as they finish."""
    rows = []
    for seed in seeds:
        for variant in variants:
            new = list(run(variant, seed))
            rows.extend(new)
            if on_result is not None:
                on_result(new)
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str], sort: bool = False) -> pd.DataFrame:
    """Mean and std over seeds of each of ``metrics`` per ``keys``: one row per group, columns ``keys``, then
    ``<metric>_mean`` and ``<metric>_std`` (NaN with one seed), then ``seeds`` (runs in the group). Metrics the
    frame lacks or holds only NaN for, and keys it lacks, are left out; groups keep their first-seen order
    (``sort``: sorted by the keys)."""
    keys = [k for k in keys if k in runs]
    present = [m for m in metrics if m in runs and runs[m].notna().any()]
    grouped = runs.groupby(keys, sort=sort)
    table = grouped[present].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table["seeds"] = grouped.size()
    return table.reset_index()


def environment() -> dict:
    """Versions and machine, recorded with every result."""
    return {"ssltutor": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _json_safe(value):
    """Settings as JSON: tuples as lists, anything else JSON cannot hold as its string."""
    return json.loads(json.dumps(value, default=str))


def history_columns(history) -> dict[str, list]:
    """A per-epoch history (a DataFrame, a ``train.History`` (its ``epochs``) or a list of row dicts) as
    ``{column: [value per row]}`` with NaN as None: the form ``metrics.json`` stores."""
    frame = getattr(history, "epochs", history)
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    frame = frame.select_dtypes(include="number")
    return {c: [None if pd.isna(v) else float(v) for v in frame[c]] for c in frame.columns}


def write_metrics(output_dir: str | Path, notebook: str, params: dict, results: dict[str, dict[str, float]],
                  started: float | None = None, extra: dict | None = None, *, data: dict[str, object] | None = None,
                  settings: dict | None = None, histories: dict[str, object] | None = None) -> Path:
    """Write ``output_dir/metrics.json``: the notebook, its parameters, ``results`` as {variant: {metric: value}},
    duration, device and versions; ``data``: {split: dataset or image count} (stored as ``images``: how many
    train and test images the run used); ``settings``: the resolved preset the run trained with; ``histories``:
    {variant: per-epoch history} (:func:`history_columns`: kNN or validation accuracy per epoch, each loss term),
    what the chapters plot from committed results. Returns the path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = {v: {k: (None if x is None else float(x)) for k, x in m.items()} for v, m in results.items()}
    record = {"notebook": notebook, "params": dict(params), "results": clean,
              "duration_s": None if started is None else round(time.time() - started, 2),
              "device": str(resolve_device(params.get("device"))), "environment": environment(),
              "command": " ".join(sys.argv), **(extra or {})}
    if data is not None:
        record["images"] = {split: int(d if isinstance(d, (int, float)) else len(d)) for split, d in data.items()}
    if settings is not None:
        record["settings"] = _json_safe(settings)
    if histories is not None:
        record["histories"] = {variant: history_columns(h) for variant, h in histories.items() if h is not None}
    path = out / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


__all__ = ["cap", "load_experiment_data", "seeded_backbone", "FIT_KEYS", "fit_options", "fit_with_preset", "VariantRun",
           "run_grid",
           "summarize", "environment", "history_columns", "write_metrics"]
