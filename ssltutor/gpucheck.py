"""The prepared GPU check behind ``python -m ssltutor.bench gpu``: one script, sized for under 8 minutes on one
H200 (an estimate until it has run: no GPU was lent to the session that wrote it; a T4 takes longer, run it there
with ``--sections paths,epoch,colab``).

    python -m ssltutor.bench gpu --write-data gpu_data   # once, on any machine: 10,000 CIFAR-10 images (~31 MB)
    python -m ssltutor.bench gpu --data gpu_data         # on the CUDA machine (gpu_data/ travels beside the repo)

``--write-data`` takes 1,000 images per class from the 20,000-image CIFAR-10 pool (``shared/data/cifar10_20k``,
seeded) and writes them as uint8 ``cifar10_images.npy`` (10,000 x 3 x 32 x 32) and ``cifar10_labels.npy`` into an
ignored folder. The check itself then runs four sections; each row is PASS, FAIL (with the error) or SKIP (with
the reason) and the script goes on, so one broken path does not hide the others:

1. **code paths**: SimCLR on ResNet-18 (CIFAR stem) for 8 steps in fp32, bf16 + channels_last, fp16 with the grad
   scaler and bf16 + channels_last + ``torch.compile`` (its compile time apart): finite losses, weights that moved,
   weights in the channels_last layout, steady images/s;
2. **throughput**: one training step of every method (the engine's eight, SwAV multi-crop, the rotation variants,
   RotNet, the internal pretext task, SLA, FKT, DoGo with its ResNet-50 peer, CaSSLe while distilling) on ResNet-18
   at 32 px, batch 256, bf16 + channels_last: images/s and the ratio to a supervised step;
3. **epoch**: one SimCLR epoch over the 10,000 images, timed with CUDA events, and the ResNet-18 passes per second
   it implies (the unit the ``colab`` preset is sized in: see ``ssltutor.presets``);
4. **colab**: one epoch (one per task for CaSSLe) of each paper notebook's headline variant at the ``colab``
   preset (fp16, its optimisers and heads) on 8,000 train / 2,000 test images, with its evaluation, and the
   notebook's projected ``colab`` duration on this GPU from the presets' cost model.

Everything is printed as tables and written to ``<data>/gpucheck.json``; the exit status is 1 when a row failed.
"""
from __future__ import annotations

import json
import math
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from .timing import synchronize

IMAGES_FILE, LABELS_FILE = "cifar10_images.npy", "cifar10_labels.npy"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_ROOT = Path(__file__).resolve().parents[1]
SOURCE_CANDIDATES = (_ROOT.parent / "shared" / "data" / "cifar10_20k", Path("/work/shared/data/cifar10_20k"))
NO_CUDA = ("python -m ssltutor.bench gpu needs a CUDA GPU: none is visible (torch.cuda.is_available() is False). "
           "Run it on a GPU machine (write its data first, anywhere: python -m ssltutor.bench gpu --write-data "
           "gpu_data), or use `python -m ssltutor.bench step` on the CPU.")

# What each paper notebook's colab run costs, in ResNet-18 passes (forward + backward of one 32 px image) per
# training image and epoch: (headline variant, the whole notebook). The same numbers as the comments of the colab
# presets in ssltutor/presets.py; the projection scales the measured headline epoch by their ratio.
NOTEBOOK_COST = {
    "02 FKT": (3.0, 9.45),            # FKT 3 of supervised 1 + FKT 3 + RT 3, x1.35 for the label sweep
    "03 internal": (1.2, 18.2),       # internal ~1.2 of supervised 1 + internal 1.2 + SLA 4 + ablation ~12
    "04 rotation": (5.5, 13.3),       # SwAV multi-crop + rotation: 2 global + 6 x 1/4 local + 2 rotated = 5.5;
                                      # the notebook's default SimCLR / BYOL, each without and with rotation: 13.3
    "05 CaSSLe": (2.5, 7.5),          # CaSSLe ~2.5 of fine-tune 2 + CaSSLe 2.5 + supervised 1 + joint 2
    "06 DoGo": (6.6, 13.2),           # the pair 6.6 of small 2 + large 4.6 + pair 6.6
}


class CheckError(SystemExit):
    """The check cannot start (no CUDA, no data): the message says why and what to run."""


# ----------------------------------------------------------------------------------------------------------------
# Data: 10,000 uint8 images beside the repository
# ----------------------------------------------------------------------------------------------------------------
def default_source() -> Path:
    """The 20,000-image CIFAR-10 pool: ``../shared/data/cifar10_20k`` beside the checkout, else the workplace's."""
    return next((p for p in SOURCE_CANDIDATES if p.is_dir()), SOURCE_CANDIDATES[0])


def write_cifar_subset(out: str | Path = "gpu_data", source: str | Path | None = None, count: int = 10_000,
                       seed: int = 0) -> tuple[Path, Path]:
    """Write ``count`` CIFAR-10 training images (``count // 10`` per class, drawn with ``seed``) from ``source``
    (a folder holding ``cifar-10-batches-py``; default :func:`default_source`) as ``out/cifar10_images.npy``
    (uint8, (count, 3, 32, 32)) and ``out/cifar10_labels.npy`` (uint8, (count,)). Returns both paths."""
    from .data import load, stratified_split

    if isinstance(count, bool) or not isinstance(count, int) or count < 10 or count % 10:
        raise ValueError(f"count must be a positive multiple of 10 (equal classes), got {count!r}")
    source = Path(source) if source is not None else default_source()
    data = load("cifar10", root=source, split="train", size=32)
    if count > len(data):
        raise ValueError(f"count {count} is more than the {len(data)} training images under {source}")
    keep = torch.arange(len(data)) if count == len(data) else stratified_split(data.labels, count / len(data), seed)[1]
    images, labels = data.images[keep].contiguous(), data.labels[keep]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / IMAGES_FILE, out / LABELS_FILE
    np.save(paths[0], images.numpy().astype(np.uint8))
    np.save(paths[1], labels.numpy().astype(np.uint8))
    return paths


def read_cifar_subset(folder: str | Path):
    """The images :func:`write_cifar_subset` wrote, as an ``ImageDataset`` named cifar10 (CPU tensors)."""
    from .data import ImageDataset

    folder = Path(folder)
    paths = folder / IMAGES_FILE, folder / LABELS_FILE
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CheckError(f"{folder} lacks {', '.join(missing)}: write them with `python -m ssltutor.bench gpu "
                         f"--write-data {folder}` (needs shared/data/cifar10_20k) and carry the folder along")
    images, labels = np.load(paths[0]), np.load(paths[1])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32) or len(labels) != len(images):
        raise CheckError(f"{paths[0]} must hold uint8 (N, 3, 32, 32) images with N labels, got {images.dtype} "
                         f"{images.shape} and {labels.shape}: write it again with --write-data")
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), list(CIFAR10_CLASSES),
                        "cifar10", "train")


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Sizes:
    """How big each section runs. ``Sizes()`` is the real check; :meth:`toy` a CPU dry run of the same code
    (wiring only: tiny data, a small convnet, no fp16 or compile; its numbers mean nothing)."""

    batch_size: int = 256
    path_steps: int = 8
    repeats: int = 10
    warmup: int = 3
    colab_train: int = 8_000
    colab_test: int = 2_000
    backbone: str | None = None       # None: each preset's (ResNet-18); the toy run swaps in a small convnet
    settings_overrides: dict = field(default_factory=dict)

    @classmethod
    def toy(cls) -> "Sizes":
        return cls(batch_size=16, path_steps=2, repeats=1, warmup=0, colab_train=160, colab_test=40,
                   backbone="small_convnet",
                   settings_overrides=dict(width=8, head_scale=1 / 32, precision="bf16", batch_size=16,
                                           probe_epochs=2, knn_k=5, model_small="small_convnet8",
                                           model_large="small_convnet16"))


@dataclass
class Row:
    section: str
    name: str
    status: str = "PASS"
    values: dict = field(default_factory=dict)
    note: str = ""


def _attempt(rows: list[Row], section: str, name: str, fn: Callable[[], dict]) -> Row:
    """Run one check; an exception becomes a FAIL row with the error (the traceback is printed)."""
    start = time.perf_counter()
    try:
        values = fn()
        row = Row(section, name, values.pop("_status", "PASS"), values, values.pop("_note", ""))
    except Exception as err:  # report and go on: one broken path must not hide the others
        traceback.print_exc()
        row = Row(section, name, "FAIL", {}, f"{type(err).__name__}: {err}")
    row.values.setdefault("wall_s", round(time.perf_counter() - start, 2))
    rows.append(row)
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in row.values.items())
    note = f"  ({row.note})" if row.note else ""
    print(f"[{row.status}] {section}: {name}" + (f"  {shown}" if shown else "") + note, flush=True)
    return row


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------------------------------
# 1. CUDA code paths
# ----------------------------------------------------------------------------------------------------------------
def _backbone(sizes: Sizes, name: str = "resnet18"):
    from .models import create_backbone

    small = sizes.backbone == "small_convnet"
    return create_backbone("small_convnet", width=8) if small else create_backbone(name)


def _head_scale(sizes: Sizes) -> float:
    return sizes.settings_overrides.get("head_scale", 1.0)


def code_paths(data, device: torch.device, sizes: Sizes) -> list[Row]:
    """SimCLR for ``path_steps`` steps per precision / layout / compile combination."""
    from .methods import create
    from .train import fit

    rows: list[Row] = []
    subset = data.subset(torch.arange(sizes.batch_size * sizes.path_steps))
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    paths = {"fp32": dict(precision="fp32"), "bf16 + channels_last": dict(precision="bf16", channels_last=True),
             "fp16 + grad scaler": dict(precision="fp16", channels_last=True),
             "bf16 + channels_last + compile": dict(precision="bf16", channels_last=True, compile=True)}
    for name, options in paths.items():
        def run(options=options):
            if options["precision"] == "fp16" and device.type != "cuda":
                return {"_status": "SKIP", "_note": "fp16 needs CUDA"}
            if options["precision"] == "bf16" and not bf16:
                return {"_status": "SKIP", "_note": "this GPU has no bf16 (torch.cuda.is_bf16_supported() False)"}
            if options.get("compile") and device.type != "cuda":
                return {"_status": "SKIP", "_note": "compile is checked on CUDA only"}
            torch.manual_seed(0)
            method = create("simclr", _backbone(sizes), dataset="cifar10", image_size=32,
                            head_scale=_head_scale(sizes))
            before = [p.detach().clone() for p in method.backbone.parameters()]
            history = fit(method, subset, epochs=1, batch_size=sizes.batch_size, optimizer="lars", lr=0.4,
                          weight_decay=1e-5, device=device, progress=False, **options)
            synchronize(device)
            losses = history.steps["loss"]
            moved = any(not torch.equal(a, b.detach().cpu()) for a, b in zip(before, method.backbone.parameters()))
            conv = next(m for m in method.backbone.modules() if isinstance(m, torch.nn.Conv2d)).weight
            layout_ok = not options.get("channels_last") or conv.is_contiguous(memory_format=torch.channels_last)
            rates = history.steps["images_per_s"].tolist()
            steady = float(np.median(rates[2:] or rates))
            values = {"loss_first": float(losses.iloc[0]), "loss_last": float(losses.iloc[-1]),
                      "steady_img_s": steady, "first_step_s": sizes.batch_size / rates[0]}
            problems = [text for ok, text in ((bool(np.isfinite(losses).all()), "non-finite loss"),
                                              (moved, "weights did not move"),
                                              (layout_ok, "weights not channels_last")) if not ok]
            if problems:
                values["_status"], values["_note"] = "FAIL", "; ".join(problems)
            return values

        _attempt(rows, "code paths", name, run)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 2. Step throughput of every method
# ----------------------------------------------------------------------------------------------------------------
def throughput_methods(sizes: Sizes) -> dict[str, Callable[[], object]]:
    """Builders of every method at ResNet-18 (DoGo: with its ResNet-50 peer), by label."""
    from .methods import create
    from .methods.dogo import backbone_from_name

    scale = _head_scale(sizes)
    ssl = dict(dataset="cifar10", image_size=32, head_scale=scale)
    labels = dict(dataset="cifar10", image_size=32, num_classes=10)
    small = {"mocov2plus": {"queue_size": 4096}, "swav": {"num_prototypes": 3000}}

    def make(name, **options):
        return lambda: create(name, _backbone(sizes), **options)

    def cassle():
        method = create("cassle", _backbone(sizes), ssl_method="simclr", **ssl)
        method.start_task(1)  # distilling: the frozen copy's forwards and the predictor
        return method

    def dogo():
        peer = _backbone(sizes) if sizes.backbone else backbone_from_name("resnet50")
        return create("dogo", _backbone(sizes), peer=peer, **ssl)

    builders = {"supervised": make("supervised", **labels)}
    for name in ("simclr", "byol", "mocov2plus", "simsiam", "barlow_twins", "vicreg", "swav"):
        builders[name] = make(name, **ssl, **small.get(name, {}))
    multi_crop = dict(num_local_crops=6, local_crop_size=16, crop_scale=(0.14, 1.0), local_crop_scale=(0.05, 0.14))
    builders["swav multi-crop"] = make("swav", **ssl, **small["swav"], **multi_crop)
    for name in ("simclr", "byol", "mocov2plus", "simsiam", "barlow_twins", "vicreg", "swav"):
        builders[f"{name}_rot"] = make(f"{name}_rot", **ssl, **small.get(name, {}))
    builders["swav_rot multi-crop"] = make("swav_rot", **ssl, **small["swav"], **multi_crop)
    builders["rotnet"] = make("rotnet", dataset="cifar10", image_size=32, head_scale=scale)
    builders["internal"] = make("internal", **labels)
    builders["sla"] = make("sla", **labels)
    builders["fkt"] = make("fkt", **labels)
    builders["dogo (resnet18 + resnet50)"] = dogo
    builders["cassle(simclr), distilling"] = cassle
    return builders


def throughput(device: torch.device, sizes: Sizes) -> list[Row]:
    """Images/s of one full training step per method, bf16 (fp16 without bf16) + channels_last."""
    from .timing import time_train_step

    rows: list[Row] = []
    precision = "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported() else "fp16"
    reference: dict[str, float] = {}
    for name, build in throughput_methods(sizes).items():
        def run(build=build, name=name):
            torch.manual_seed(0)
            method = build()
            rate = time_train_step(method, sizes.batch_size, 32, precision, True, device, sizes.repeats,
                                   sizes.warmup, num_classes=10)
            if name == "supervised":
                reference["supervised"] = rate
            del method
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return {"img_s": rate, "x_supervised": reference.get("supervised", math.nan) / rate,
                    "precision": precision}

        _attempt(rows, "throughput", name, run)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 3. One SimCLR epoch on the 10,000 images
# ----------------------------------------------------------------------------------------------------------------
def simclr_epoch(data, device: torch.device, sizes: Sizes) -> list[Row]:
    from .methods import create
    from .train import fit

    rows: list[Row] = []
    precision = "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported() else "fp16"

    def run():
        torch.manual_seed(0)
        method = create("simclr", _backbone(sizes), dataset="cifar10", image_size=32, head_scale=_head_scale(sizes))
        options = dict(epochs=1, batch_size=sizes.batch_size, optimizer="lars", lr=0.4, weight_decay=1e-5,
                       precision=precision, channels_last=True, device=device, progress=False)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            history = fit(method, data, **options)
            end.record()
            torch.cuda.synchronize(device)
            seconds = start.elapsed_time(end) / 1000
        else:
            t0 = time.perf_counter()
            history = fit(method, data, **options)
            seconds = time.perf_counter() - t0
        images = len(history.steps) * sizes.batch_size
        return {"images": images, "seconds": seconds, "img_s": images / seconds,
                "resnet18_passes_s": 2 * images / seconds, "precision": precision,
                "loss_last": float(history.steps["loss"].iloc[-1])}

    _attempt(rows, "epoch", f"simclr {sizes.backbone or 'resnet18'}, {len(data):,} images, batch {sizes.batch_size}",
             run)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 4. Short colab-preset runs of each paper notebook's headline variant
# ----------------------------------------------------------------------------------------------------------------
def _colab(paper: str, sizes: Sizes, **overrides) -> dict:
    from .presets import preset

    settings = preset("colab", paper=paper, **overrides)
    settings.update({k: v for k, v in sizes.settings_overrides.items() if k in settings})
    if sizes.backbone is not None and "backbone" in settings:
        settings["backbone"] = sizes.backbone
    return settings


def _projection(name: str, seconds: float, train_images: int, settings: dict, epochs_key: str) -> dict:
    """The notebook's colab duration on this GPU: the headline epoch scaled to the preset's images and epochs
    and by the notebook's cost over the headline variant's (:data:`NOTEBOOK_COST`)."""
    variant_cost, notebook_cost = NOTEBOOK_COST[name]
    epochs = settings[epochs_key]
    epochs = sum(epochs) if isinstance(epochs, (tuple, list)) else epochs
    images = settings["max_train"] or train_images
    per_epoch_image = seconds / train_images
    return {"epoch_s": seconds, "notebook_projected_min": per_epoch_image * images * epochs * notebook_cost
            / variant_cost / 60}


def colab_runs(data, device: torch.device, sizes: Sizes) -> list[Row]:
    from .studies import cassle as continual, dogo as dogo_study, internal as internal_study, rotation as rotation_study
    from .data import ImageDataset
    from .studies import fkt

    rows: list[Row] = []
    n_train, n_test = sizes.colab_train, sizes.colab_test
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    train = data.subset(order[:n_train])
    test = data.subset(order[n_train:n_train + n_test])
    test = ImageDataset(test.images, test.labels, list(test.classes), "cifar10", "test")

    def timed(fn) -> tuple[object, float]:
        synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        return out, time.perf_counter() - t0

    def fkt_run():
        settings = _colab("fkt", sizes)
        val_size = max(10, n_train // 8)
        splits = fkt.Splits(train.subset(torch.arange(val_size, n_train)), train.subset(torch.arange(val_size)), test)
        result, seconds = timed(lambda: fkt.run_variant("fkt", splits, dict(settings, epochs=1), device=device))
        return {"accuracy": result.metrics["accuracy"],
                **_projection("02 FKT", seconds, len(splits.train), settings, "epochs")}

    def internal_run():
        settings = _colab("internal", sizes)
        out, seconds = timed(lambda: internal_study.run_variant("internal", train, test, dict(settings, epochs=1),
                                                                device=device))
        return {"accuracy": out.metrics["accuracy_aggregated"],
                **_projection("03 internal", seconds, n_train, settings, "epochs")}

    def rotation_run():
        settings = _colab("rotation", sizes)
        out, seconds = timed(lambda: rotation_study.run_variant("swav", True, train, test, 1, settings,
                                                                device=device))
        return {"knn": out.metrics["knn"], "probe": out.metrics["probe"], "rot_acc": out.metrics["rot_acc"],
                **_projection("04 rotation", seconds, n_train, settings, "epoch_budgets")}

    def cassle_run():
        settings = _colab("cassle", sizes)
        tasks = continual.make_tasks(train, 5, seed=settings["task_seed"])
        run, seconds = timed(lambda: continual.run_variant(
            "cassle", train, test, tasks, dict(settings, epochs_per_task=1), ssl_method="simclr", device=device,
            random_baseline=None))
        return {"A": run.metrics["A"], "F": run.metrics["F"],
                **_projection("05 CaSSLe", seconds, n_train, settings, "epochs_per_task")}

    def dogo_run():
        settings = _colab("dogo", sizes)
        one = dict(settings, epochs=1)

        def train_and_probe():
            method = dogo_study.build("pair", one, dataset="cifar10", seed=0)
            dogo_study.train(method, train, one, device=device)
            return dogo_study.evaluate_backbone(method.backbones[0], method, train, test, one)

        results, seconds = timed(train_and_probe)
        return {"small_in_pair_linear": results.get("linear"),
                **_projection("06 DoGo", seconds, n_train, settings, "epochs")}

    for name, run in (("02 FKT: fkt", fkt_run), ("03 internal: internal", internal_run),
                      ("04 rotation: swav_rot multi-crop", rotation_run), ("05 CaSSLe: cassle(simclr)", cassle_run),
                      ("06 DoGo: pair (resnet18 + resnet50)", dogo_run)):
        _attempt(rows, "colab", name, run)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The whole check
# ----------------------------------------------------------------------------------------------------------------
SECTIONS = ("paths", "throughput", "epoch", "colab")


def environment(device: torch.device) -> dict:
    info = {"ssltutor": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    bf16=torch.cuda.is_bf16_supported())
    return info


def run_check(data_dir: str | Path = "gpu_data", sections=SECTIONS, device: str | torch.device = "cuda",
              sizes: Sizes | None = None, output: str | Path | None = None) -> dict:
    """Run ``sections`` of the check on ``device`` with the images in ``data_dir``; returns (and writes to
    ``output``, default ``data_dir/gpucheck.json``) {"environment", "rows", "failed", "seconds"}."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}: choose from {', '.join(SECTIONS)}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckError(NO_CUDA)
    sizes = sizes or Sizes()
    data = read_cifar_subset(data_dir)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    env = environment(device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    rows: list[Row] = []
    steps = {"paths": lambda: code_paths(data, device, sizes), "throughput": lambda: throughput(device, sizes),
             "epoch": lambda: simclr_epoch(data, device, sizes), "colab": lambda: colab_runs(data, device, sizes)}
    for section in SECTIONS:
        if section in sections:
            t0 = time.perf_counter()
            rows.extend(steps[section]())
            print(f"--- {section}: {time.perf_counter() - t0:.0f} s", flush=True)
    record = {"environment": env, "rows": [vars(r) for r in rows],
              "failed": [f"{r.section}: {r.name}" for r in rows if r.status == "FAIL"],
              "seconds": round(time.perf_counter() - start, 1)}
    path = Path(output) if output is not None else Path(data_dir) / "gpucheck.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=_json_value))
    print(summary_table(rows))
    print(f"gpu check: {len(rows)} rows, {len(record['failed'])} failed, {record['seconds']:.0f} s; "
          f"written to {path}", flush=True)
    return record


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def summary_table(rows: list[Row]) -> str:
    """One line per row: status, section, name and its values."""
    lines = []
    for r in rows:
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in r.values.items() if k != "wall_s")
        lines.append(f"{r.status:4}  {r.section:10}  {r.name:38}  {values}{'  ' + r.note if r.note else ''}")
    return "\n".join(lines)


def main(args) -> int:
    """What ``python -m ssltutor.bench gpu`` runs (``args`` from its parser). Returns the exit status."""
    if args.write_data is not None:
        images, labels = write_cifar_subset(args.write_data, args.source, args.count, args.seed)
        size = (images.stat().st_size + labels.stat().st_size) / 2**20
        print(f"wrote {images} and {labels} ({size:.1f} MiB)")
        return 0
    if not torch.cuda.is_available():
        raise CheckError(NO_CUDA)
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    record = run_check(args.data, sections, "cuda", Sizes(batch_size=args.batch_size), args.output)
    return 1 if record["failed"] else 0


def add_arguments(parser) -> None:
    """The ``gpu`` subcommand's options."""
    parser.add_argument("--data", default="gpu_data", help="folder with cifar10_images.npy / cifar10_labels.npy")
    parser.add_argument("--write-data", metavar="FOLDER", default=None,
                        help="write the check's data into FOLDER (any machine, no GPU needed) and exit")
    parser.add_argument("--source", default=None,
                        help="folder holding cifar-10-batches-py for --write-data (default: shared/data/cifar10_20k)")
    parser.add_argument("--count", type=int, default=10_000, help="images for --write-data (a multiple of 10)")
    parser.add_argument("--seed", type=int, default=0, help="the draw of --write-data")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)}")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--output", default=None, help="the JSON record (default: <data>/gpucheck.json)")


__all__ = ["write_cifar_subset", "read_cifar_subset", "run_check", "Sizes", "CheckError", "main", "add_arguments",
           "NOTEBOOK_COST", "SECTIONS"]
