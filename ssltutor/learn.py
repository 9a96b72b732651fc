"""Self-supervised learning on a laptop: train one method at a preset, then score its frozen backbone.

``learn_run(name, train, test, settings, seed)`` builds the method from ``settings`` (the ``cpu`` preset merged with
the per-method recipe of ``PAPER_PRESETS["learn"]``), trains it with :func:`ssltutor.train.fit` and measures

* ``probe``: the standardized linear probe on every train label of the frozen backbone features (for the supervised
  reference: its own classifier's test accuracy), and ``knn``: weighted cosine kNN (k = ``knn_k``) on the test split;
* ``probe0`` / ``knn0``: the same two numbers for the *untrained* backbone of the same seed (the random-init floor);
* ``train_seconds``: the summed epoch times of the fit (augmentation, forward, backward, update; no evaluation).

It is what ``python -m ssltutor.bench learn`` prints and what the book's "SSL on a laptop" page plots.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from .data import ImageDataset, augment
from .evaluate import KNNMonitor, extract_features
from .methods import METHODS, SSL_METHODS, Method, create
from .models import create_backbone
from .probes import probe_suite
from .train import fit

LEARN_METHODS = ("supervised",) + SSL_METHODS


@dataclass
class LearnResult:
    """One trained method: accuracies in [0, 1] on the test split, and the per-epoch history of the fit."""

    method: str
    seed: int
    probe: float
    knn: float
    probe0: float
    knn0: float
    epochs: int
    train_seconds: float
    history: pd.DataFrame = field(default_factory=pd.DataFrame)

    def line(self) -> str:
        """``learn METHOD seed S: probe P, knn K, random init probe P0, knn K0, epochs E, train seconds T``."""
        # seconds as recorded (0.1 s) first, so that a run read back from its record prints the same line
        return (f"learn {self.method} seed {self.seed}: probe {self.probe:.3f}, knn {self.knn:.3f}, "
                f"random init probe {self.probe0:.3f}, knn {self.knn0:.3f}, epochs {self.epochs}, "
                f"train seconds {round(self.train_seconds, 1):.0f}")


def method_settings(settings: dict, name: str, overrides: dict | None = None) -> dict:
    """The shared settings with ``settings["methods"][name]`` merged over them (fit keys and ``options``), then
    ``overrides``: ``{"lr": 2e-3, "options.temperature": 0.5}`` (a dotted key sets one method option)."""
    if name not in LEARN_METHODS:
        raise ValueError(f"unknown method {name!r}: choose from {', '.join(LEARN_METHODS)}")
    recipe = settings.get("methods", {}).get(name, {})
    merged = {k: v for k, v in settings.items() if k != "methods"}
    merged.update({k: v for k, v in recipe.items() if k != "options"})
    merged["options"] = dict(recipe.get("options", {}))
    for key, value in (overrides or {}).items():
        if key.startswith("options."):
            merged["options"][key.split(".", 1)[1]] = value
        elif key in merged:
            merged[key] = value
        else:
            raise ValueError(f"unknown setting {key!r}: known are {', '.join(sorted(merged))} and options.<name>")
    return merged


def build_method(name: str, s: dict, seed: int, dataset: str, num_classes: int) -> Method:
    """The method ``name`` on a fresh backbone seeded by ``seed``, built from its merged settings ``s``
    (:func:`method_settings`): backbone, width, heads and views.

    ``view_size`` (if set and different from ``image_size``) makes the training views that many pixels wide; the
    evaluation transform keeps ``image_size`` (the backbone pools globally, so it takes either)."""
    torch.manual_seed(seed)
    backbone = create_backbone(s["backbone"], width=s["width"])
    options = dict(s["options"])
    view_size = s.get("view_size") or s["image_size"]
    stats = augment.STATS.get(dataset, augment.IMAGENET_STATS)
    if name == "supervised":
        method = create(name, backbone, dataset=dataset, num_classes=num_classes, image_size=s["image_size"],
                        **options)
        if view_size != s["image_size"]:
            method.views = augment.supervised_views(view_size, *stats, recipe=options.get("augment_views", "crop_flip"))
        return method
    options.setdefault("crop_scale", s["crop_scale"])
    if view_size != s["image_size"]:
        view_options = {"scale": tuple(options.pop("crop_scale"))}
        if "jitter_strength" in options:
            view_options["strength"] = options.pop("jitter_strength")
        options["views"] = augment.views_for(METHODS[name].view_recipe, view_size, *stats, **view_options)
    return create(name, backbone, dataset=dataset, image_size=s["image_size"], head_scale=s["head_scale"], **options)


def frozen_scores(method: Method, train: ImageDataset, test: ImageDataset, settings: dict, seed: int) -> dict:
    """``{"linear", "knn"}`` of the method's frozen backbone (eval mode, its own eval transform)."""
    method.eval()
    f_train = extract_features(method.backbone, train.images, method.eval_transform)
    f_test = extract_features(method.backbone, test.images, method.eval_transform)
    return probe_suite(f_train, train.labels.to(f_train.device), f_test, test.labels.to(f_test.device),
                       num_classes=train.num_classes, val_fraction=0.0, epochs=settings["probe_epochs"],
                       knn_k=settings["knn_k"], seed=seed)


@torch.no_grad()
def classifier_accuracy(method: Method, test: ImageDataset, batch_size: int = 1024) -> float:
    """Test accuracy of a supervised method's own classifier."""
    method.eval()
    device = next(method.parameters()).device
    correct = 0
    for start in range(0, len(test), batch_size):
        x = method.eval_transform(test.images[start:start + batch_size].to(device))
        predictions = method.predict(x.contiguous(memory_format=method.memory_format)).argmax(1)
        correct += (predictions.cpu() == test.labels[start:start + batch_size]).sum().item()
    return correct / len(test)


def floor_key(s: dict, seed: int) -> tuple:
    """What fixes the random-init floor of a run with merged settings ``s``: the seed and the untrained backbone
    (name, width, image size); runs sharing it share the floor exactly."""
    return seed, s["backbone"], s["width"], s["image_size"], s["probe_epochs"], s["knn_k"]


def learn_run(name: str, train: ImageDataset, test: ImageDataset, settings: dict, seed: int = 0,
              overrides: dict | None = None, device=None, monitor: KNNMonitor | None = None,
              floors: dict | None = None) -> LearnResult:
    """Score the random-init backbone, train ``name`` with its recipe, score it again (see the module docstring).
    ``overrides`` change the recipe (:func:`method_settings`; the CI smoke sets ``epochs`` 1). ``monitor``: an
    optional per-epoch kNN callback (its ``knn_acc`` lands in the history; its time is not train time).
    ``floors``: a dict shared by several calls that caches the random-init scores by :func:`floor_key` (the
    seven SSL methods of one seed start from the same untrained backbone)."""
    s = method_settings(settings, name, overrides)
    method = build_method(name, s, seed, train.name, train.num_classes)
    floors = {} if floors is None else floors
    key = floor_key(s, seed)
    if key not in floors:
        floors[key] = frozen_scores(method, train, test, s, seed)
    before = floors[key]
    epochs = s["epochs"]
    history = fit(method, train, epochs=epochs, batch_size=s["batch_size"], optimizer=s["optimizer"], lr=s["lr"],
                  weight_decay=s["weight_decay"], warmup_epochs=s["warmup_epochs"], precision=s["precision"],
                  channels_last=s["channels_last"], device=device, seed=seed, progress=False,
                  callbacks=[monitor] if monitor is not None else [])
    after = frozen_scores(method, train, test, s, seed)
    probe = classifier_accuracy(method, test) if name == "supervised" else after["linear"]
    return LearnResult(name, seed, probe, after["knn"], before["linear"], before["knn"], epochs,
                       float(history.epochs["time_s"].sum()), history.epochs)


def best_line(results: list[LearnResult]) -> str:
    """``learn best: METHOD probe P (+D points over random init)``: the SSL method of highest mean probe."""
    frame = pd.DataFrame([{"method": r.method, "probe": r.probe, "probe0": r.probe0}
                          for r in results if r.method != "supervised"])
    if frame.empty:
        raise ValueError("best_line needs at least one self-supervised result")
    means = frame.groupby("method")[["probe", "probe0"]].mean()
    best = means["probe"].idxmax()
    gain = 100 * (means.loc[best, "probe"] - means.loc[best, "probe0"])
    return f"learn best: {best} probe {means.loc[best, 'probe']:.3f} ({gain:+.1f} points over random init)"




RECORD_COLUMNS = ("label", "method", "seed", "preset", "overrides", "train_images", "epoch", "seconds", "knn_monitor",
                  "epochs", "train_seconds", "probe", "knn", "probe0", "knn0", "recipe")


def recipe_key(settings: dict) -> str:
    """A method's merged settings (:func:`method_settings`) as the canonical JSON string a record stores: a run
    recorded with another recipe is a different run (resume never reuses it)."""
    import json

    return json.dumps(settings, sort_keys=True, default=str)


def record_rows(result: LearnResult, label: str, preset: str, overrides: dict | None, train_images: int,
                recipe: str) -> list[dict]:
    """One row per epoch of ``result``: cumulative train ``seconds`` and the monitor's kNN at that epoch (NaN
    without a monitor), with the run's final numbers and its ``recipe`` (:func:`recipe_key`) on every row."""
    import json

    final = {"epochs": result.epochs, "train_seconds": round(result.train_seconds, 1), "probe": result.probe,
             "knn": result.knn, "probe0": result.probe0, "knn0": result.knn0}
    knn = result.history["knn_acc"] if "knn_acc" in result.history else [float("nan")] * len(result.history)
    seconds = result.history["time_s"].cumsum()
    return [{"label": label, "method": result.method, "seed": result.seed, "preset": preset,
             "overrides": json.dumps(overrides or {}, sort_keys=True), "train_images": train_images,
             "epoch": epoch, "seconds": round(float(t), 1), "knn_monitor": float(k), **final, "recipe": recipe}
            for epoch, t, k in zip(result.history["epoch"], seconds, knn)]


def append_rows(path, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header written when the file is new); existing rows are kept."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(RECORD_COLUMNS)).to_csv(path, mode="a", header=not path.exists(), index=False)


def load_records(path) -> pd.DataFrame:
    """The rows :func:`append_rows` wrote (an empty frame with :data:`RECORD_COLUMNS` when the file is missing)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=list(RECORD_COLUMNS))
    frame = pd.read_csv(path)
    missing = [c for c in RECORD_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}: it was not written by ssltutor.learn.append_rows")
    return frame


def canonical_runs(records: pd.DataFrame) -> pd.DataFrame:
    """The rows recorded under the method's own name (``bench learn`` without ``--label``): the recipe's runs.
    Runs of other recipes (a sweep's ``choice/value`` labels, a superseded recipe) are kept out."""
    return records[records["label"] == records["method"]]


def _final_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The last epoch's row of every (method, seed) among the recipe's runs (:func:`canonical_runs`)."""
    return canonical_runs(records).sort_values("epoch", kind="stable").groupby(["method", "seed"], sort=False).tail(1)


def summary_table(records: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean +- std over seeds of the final probe, kNN, their random-init floors and train seconds
    (strings ready to print), and the number of seeds; only the runs of :func:`canonical_runs`."""
    runs = _final_rows(records)
    rows = []
    for name in [m for m in LEARN_METHODS if m in set(runs["method"])]:
        group = runs[runs["method"] == name]

        def cell(column: str, scale: float = 100.0, digits: int = 1) -> str:
            values = group[column] * scale
            spread = f" +- {values.std():.{digits}f}" if len(values) > 1 else ""
            return f"{values.mean():.{digits}f}{spread}"

        rows.append({"method": name, "seeds": len(group), "probe %": cell("probe"), "kNN %": cell("knn"),
                     "random init probe %": cell("probe0"), "random init kNN %": cell("knn0"),
                     "probe gain (points)": f"{100 * (group['probe'] - group['probe0']).mean():+.1f}",
                     "train s": cell("train_seconds", 1.0, 0)})
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


# Issue 14's targets for the cpu recipe (2-core machine, 2 threads): what :func:`target_checks` tests
TARGETS = {"best_probe": 0.60, "best_gain": 15.0, "every_gain": 5.0, "supervised": 0.85, "train_seconds": 600.0,
           "seeds": 3}


def target_checks(records: pd.DataFrame, targets: dict | None = None) -> pd.DataFrame:
    """Each target of :data:`TARGETS` checked on the recipe's recorded runs (:func:`canonical_runs`, last epoch of
    each): ``best``: the SSL objective of highest mean probe reaches ``best_probe`` and ``best_gain`` points over
    its random-init floor; ``every``: each objective's mean probe gain >= ``every_gain`` and its mean kNN >= the
    floor's; ``supervised``: every seed >= ``supervised``; ``time``: every run's train seconds <= ``train_seconds``
    (the runs over it named); ``seeds``: every method has ``seeds`` seeds. One row per target: ``met`` (bool) and
    ``measured`` (what the numbers are, in words), computed, never typed."""
    t = {**TARGETS, **(targets or {})}
    runs = _final_rows(records)
    if runs.empty:
        raise ValueError("no recorded runs of the recipe: run `python -m ssltutor.bench learn --record ...` first")
    means = runs.groupby("method", sort=False)[["probe", "knn", "probe0", "knn0"]].mean()
    ssl = means.drop(index="supervised", errors="ignore")
    gain = 100 * (ssl["probe"] - ssl["probe0"])
    rows = []
    if not ssl.empty:
        best = ssl["probe"].idxmax()
        rows.append(("best", f"best SSL probe >= {t['best_probe']:.2f} and >= +{t['best_gain']:g} points",
                     ssl.loc[best, "probe"] >= t["best_probe"] and gain[best] >= t["best_gain"],
                     f"{best} {ssl.loc[best, 'probe']:.3f} ({gain[best]:+.1f} points, mean of "
                     f"{(runs['method'] == best).sum()} seeds)"))
        short = [f"{m} {gain[m]:+.1f}" for m in ssl.index if gain[m] < t["every_gain"]]
        below = [f"{m} kNN {ssl.loc[m, 'knn']:.3f} < {ssl.loc[m, 'knn0']:.3f}" for m in ssl.index
                 if ssl.loc[m, "knn"] < ssl.loc[m, "knn0"]]
        rows.append(("every", f"every SSL objective >= +{t['every_gain']:g} probe points, kNN not below random init",
                     not short and not below,
                     "; ".join(short + below) or f"smallest gain {gain.idxmin()} {gain.min():+.1f}, every kNN above "
                                                 "its random init"))
    sup = runs[runs["method"] == "supervised"]
    if not sup.empty:
        rows.append(("supervised", f"supervised reference >= {t['supervised']:.2f} on every seed",
                     bool((sup["probe"] >= t["supervised"]).all()),
                     ", ".join(f"seed {s} {p:.3f}" for s, p in zip(sup["seed"], sup["probe"]))))
    slow = runs[runs["train_seconds"] > t["train_seconds"]]
    rows.append(("time", f"train seconds <= {t['train_seconds']:g} on every run", slow.empty,
                 ", ".join(f"{m} seed {s}: {x:.0f} s" for m, s, x in
                           zip(slow["method"], slow["seed"], slow["train_seconds"]))
                 or f"slowest {runs['train_seconds'].max():.0f} s"))
    counts = runs.groupby("method", sort=False)["seed"].nunique()
    few = counts[counts < t["seeds"]]
    rows.append(("seeds", f"{t['seeds']} seeds per method", few.empty,
                 ", ".join(f"{m}: {n}" for m, n in few.items()) or f"{t['seeds']} seeds for all {len(counts)}"))
    return pd.DataFrame(rows, columns=["target", "wanted", "met", "measured"]).set_index("target")


def recipe_table(preset: str = "cpu") -> pd.DataFrame:
    """The recipe of every method at ``preset`` (``PAPER_PRESETS["learn"]`` over the shared preset), one row each."""
    from .presets import preset as get_preset

    settings = get_preset(preset, paper="learn")
    rows = []
    for name in LEARN_METHODS:
        s = method_settings(settings, name)
        rows.append({"method": name, "backbone": f"{s['backbone']}({s['width']})", "epochs": s["epochs"],
                     "batch": s["batch_size"], "optimizer": f"{s['optimizer']} {s['lr']:g}",
                     "weight decay": f"{s['weight_decay']:g}",
                     "views": "-" if name == "supervised" else
                     f"{s.get('view_size') or s['image_size']} px, crops {s['crop_scale'][0]:g}-{s['crop_scale'][1]:g}",
                     "options": ", ".join(f"{k}={v}" for k, v in s["options"].items() if k != "num_classes")})
    return pd.DataFrame(rows).set_index("method")


def recorded_result(path, label: str, method: str, seed: int, preset: str, overrides: dict | None,
                    train_images: int, recipe: str) -> LearnResult | None:
    """The run recorded in the CSV at ``path`` with exactly these keys (``recipe``: :func:`recipe_key`), rebuilt
    from its rows; None if absent."""
    import json

    records = load_records(path)
    if records.empty:
        return None
    rows = records[(records["label"] == label) & (records["method"] == method) & (records["seed"] == seed)
                   & (records["preset"] == preset) & (records["train_images"] == train_images)
                   & (records["overrides"] == json.dumps(overrides or {}, sort_keys=True))
                   & (records["recipe"] == recipe)]
    if rows.empty:
        return None
    last = rows.sort_values("epoch").iloc[-1]
    history = pd.DataFrame({"epoch": rows["epoch"], "time_s": rows["seconds"].diff().fillna(rows["seconds"]),
                            "knn_acc": rows["knn_monitor"]}).reset_index(drop=True)
    return LearnResult(method, seed, float(last["probe"]), float(last["knn"]), float(last["probe0"]),
                       float(last["knn0"]), int(last["epochs"]), float(last["train_seconds"]), history)


def choice_runs(records: pd.DataFrame, choice: str, baseline: tuple[str, str] | None = None) -> pd.DataFrame:
    """The rows of one choice of a sweep (labels ``"<choice>/<value>"``), labelled by the value alone.
    ``baseline=(label, value)`` adds the run recorded under ``label`` as the value ``value`` (the unchanged recipe,
    trained once and shown in every choice's plot)."""
    prefix = f"{choice}/"
    rows = records[records["label"].str.startswith(prefix)]
    if baseline is not None:
        base = records[records["label"] == baseline[0]]
        if base.empty:
            raise ValueError(f"no run labelled {baseline[0]!r} in the records")
        rows = pd.concat([base.assign(label=prefix + baseline[1]), rows[rows["label"] != baseline[0]]])
    return rows.assign(label=rows["label"].str.removeprefix(prefix))


def _screening_runs(path) -> list[dict]:
    import json
    from pathlib import Path

    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_screening(path) -> pd.DataFrame:
    """The screening runs behind the ``cpu`` recipe (``results/laptop/screening.jsonl``, one JSON object per run,
    written by ``results/laptop/screening.py``): one row per run with its recipe, wall ``train_s``, the median
    epoch time of its per-epoch curve where it has one (steadier than the total when another job shared the
    machine for a few epochs), the final probe / kNN, and the choices it stands for (``cfg["choice"]``: a
    ``{choice: value}`` mapping, e.g. ``{"views": "24 px"}``, see :func:`screening_curves`)."""
    rows = []
    for number, run in enumerate(_screening_runs(path), start=1):
        cfg = run["cfg"]
        curve = run.get("curve") or []
        epoch_seconds = pd.Series([b[0] - a[0] for a, b in zip([[0.0, 0.0]] + curve[:-1], curve)])
        rows.append({"run": number, "method": cfg["method"],
                     "backbone": f"{cfg.get('backbone', 'res_convnet')}({cfg.get('width', 16)})",
                     "views px": cfg.get("view_size", 32), "optimizer": cfg.get("optimizer", "adam"),
                     "lr": cfg.get("lr"), "epochs": cfg["epochs"], "options": ", ".join(
                         f"{k}={v}" for k, v in cfg.get("options", {}).items()
                         if k in ("base_tau", "proj_out", "num_classes", "label_smoothing", "num_prototypes",
                                  "temperature")),
                     "train_s": run.get("train_s"),
                     "median_epoch_s": float(epoch_seconds.median()) if len(epoch_seconds) else None,
                     "probe": run.get("test_acc", run.get("probe")), "knn": run.get("knn"),
                     "random_init_probe": run.get("probe0"),
                     "choices": ", ".join(sorted(cfg.get("choice", {})))})
    return pd.DataFrame(rows).set_index("run")


def screening_choices(path) -> list[str]:
    """The choices the screening runs in ``path`` compare (the keys of their ``cfg["choice"]``), in first-seen
    order."""
    seen: dict[str, None] = {}
    for run in _screening_runs(path):
        seen.update(dict.fromkeys(run["cfg"].get("choice", {})))
    return list(seen)


def screening_curves(path, choice: str) -> pd.DataFrame:
    """The per-epoch curves of the screening runs that compare ``choice``, in the shape of :func:`load_records`
    (columns ``label`` = the run's value of the choice, ``seed``, ``epoch``, ``seconds``, ``knn_monitor``,
    ``probe``, ``probe0``), for :func:`ssltutor.plots.plot_accuracy_vs_time`; a run without a curve is one row at
    its last epoch and ``train_s`` with a NaN kNN (the plot shows its probe only). A run without a random-init probe
    of its own gets the mean of the runs of the same backbone and width that have one (the same untrained
    network), NaN where none has.
    """
    runs = _screening_runs(path)

    def network(run: dict) -> tuple:
        return run["cfg"].get("backbone", "res_convnet"), run["cfg"].get("width", 16)

    measured: dict[tuple, list[float]] = {}
    for run in runs:
        if run.get("probe0") is not None:
            measured.setdefault(network(run), []).append(run["probe0"])
    rows = []
    for run in runs:
        value = run["cfg"].get("choice", {}).get(choice)
        if value is None:
            continue
        same = measured.get(network(run), [])
        floor = run.get("probe0", sum(same) / len(same) if same else float("nan"))
        # a run without a per-epoch curve (no monitor) is its final point alone: no line, the probe's star
        curve = run.get("curve") or [[run["train_s"], float("nan")]]
        first = 1 if run.get("curve") else run["cfg"]["epochs"]
        for epoch, (seconds, knn) in enumerate(curve, start=first):
            rows.append({"label": str(value), "seed": run["cfg"].get("seed", 0), "epoch": epoch,
                         "seconds": seconds, "knn_monitor": knn, "probe": run.get("probe"), "probe0": floor})
    if not rows:
        known = ", ".join(screening_choices(path)) or "none"
        raise ValueError(f"no screening run compares {choice!r}: the choices in {path} are {known}")
    return pd.DataFrame(rows)


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per label of a curves frame (:func:`screening_curves`, :func:`choice_runs`): its epochs, the train
    seconds at its last epoch, its final linear probe and the probe's gain over the random-init floor, in points
    (the means over seeds where a label has several)."""
    last = curves.sort_values("epoch", kind="stable").groupby(["label", "seed"], sort=False).tail(1)
    table = last.groupby("label").agg(epochs=("epoch", "mean"), seconds=("seconds", "mean"),
                                      probe=("probe", "mean"), probe0=("probe0", "mean"))
    table = table.loc[list(curves["label"].unique())]  # the labels in the order the curves give them
    table["probe gain (points)"] = (100 * (table["probe"] - table["probe0"])).round(1)
    return table.drop(columns="probe0").astype({"epochs": int}).round({"seconds": 0, "probe": 3})


def recorded_results(records: pd.DataFrame) -> list[LearnResult]:
    """The recipe's runs (:func:`canonical_runs`) of a records frame as :class:`LearnResult` s, in the order
    ``bench learn`` prints them: by seed, then in :data:`LEARN_METHODS` order."""
    runs = _final_rows(records)
    order = {name: i for i, name in enumerate(LEARN_METHODS)}
    runs = runs.assign(_order=runs["method"].map(order)).sort_values(["seed", "_order"])
    return [LearnResult(r.method, int(r.seed), float(r.probe), float(r.knn), float(r.probe0), float(r.knn0),
                        int(r.epochs), float(r.train_seconds)) for r in runs.itertuples()]


def recorded_lines(records: pd.DataFrame) -> list[str]:
    """The ``learn ...`` lines of the recipe's recorded runs, then the ``learn best`` line (what ``bench learn
    --seeds ... --record`` prints again for them)."""
    results = recorded_results(records)
    lines = [r.line() for r in results]
    if any(r.method != "supervised" for r in results):
        lines.append(best_line(results))
    return lines
