"""Benchmarks: ``python -m ssltutor.bench <subcommand>``.

``step``: train-step images/s per method and the ratio to a supervised step. ``gpu``: the GPU check.
``learn``: train each method at the ``cpu`` preset on CIFAR-10 and print its frozen-feature probe and kNN beside the
random-init backbone's (:mod:`ssltutor.learn`).
``augment``: images/s of SimCLR's two-view augmentation, batched on the device (:mod:`ssltutor.data.augment`)
versus the usual per-sample ``torchvision.transforms.v2`` pipeline behind a ``DataLoader`` with worker processes,
on the same uint8 images; ends with the line ``augment speedup: N.Nx``.

On a machine shared with other jobs, wall-clock numbers with 2 threads collapse: OpenMP threads spin at the end
of every parallel op while their partner is descheduled, and the batched pipeline is a few hundred such ops. Run
``OMP_WAIT_POLICY=PASSIVE python -m ssltutor.bench augment`` (measured here at load ~17 on 2 cores: 1,975 instead
of 129 images/s) or ``--threads 1``; the "images per CPU-second" line is printed for the same reason.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Sequence

import torch

from .data import augment
from .models import CONVNETS
from .timing import CLOCKS, random_images, seconds_per_step, synchronize, time_train_step, training_step  # noqa: F401

# ------------------------------------------------------------------------------------------------------------------
# augment
# ------------------------------------------------------------------------------------------------------------------


class _TwoViewDataset(torch.utils.data.Dataset):
    """uint8 (3, H, W) images -> (view 1, view 2), each through a per-sample torchvision pipeline."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        return self.transform(image), self.transform(image)


def torchvision_simclr_transform(size: int, mean, std, strength: float = 1.0):
    """The per-sample equivalent of :func:`augment.simclr_views` (one view): uint8 tensor in, float out."""
    from torchvision.transforms import v2

    s = strength
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


@contextlib.contextmanager
def _torch_threads(count: int):
    """torch's intra-op thread count set to ``count`` inside the block, the caller's restored after it."""
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _best_rate(run_round, rounds: int) -> float:
    """Highest images/s over ``rounds`` calls of ``run_round() -> (images, seconds)``: on a shared machine the
    best round is the one least disturbed by other processes (timeit's rule)."""
    return max(images / seconds for images, seconds in (run_round() for _ in range(rounds)))


def batched_images_per_second(device, batch_size: int = 512, size: int = 32, repeats: int = 20, rounds: int = 3,
                              dtype: torch.dtype = torch.float32) -> float:
    """Images/s (two views each) of :func:`augment.simclr_views` on one uint8 batch already on ``device``;
    best of ``rounds`` rounds of ``repeats`` batches."""
    device = torch.device(device)
    images = random_images(batch_size, size).to(device)
    views = augment.simclr_views(size, *augment.STATS["cifar10"], dtype=dtype)
    generator = torch.Generator(device).manual_seed(0)
    for _ in range(3):  # warm-up: allocator, kernels, CUDA context
        views(images, generator)

    def run_round():
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            views(images, generator)
        synchronize(device)
        return batch_size * repeats, time.perf_counter() - start

    return _best_rate(run_round, rounds)


def loader_images_per_second(batch_size: int = 512, size: int = 32, batches: int = 6, workers: int = 2,
                             rounds: int = 3) -> float:
    """Images/s (two views each) of the per-sample torchvision v2 pipeline through a DataLoader with ``workers``
    processes; best of ``rounds`` epochs of ``batches`` batches. Each epoch's first batch (worker start-up,
    pipeline fill) is not timed, which if anything flatters the DataLoader."""
    images = random_images(batch_size * batches, size)
    dataset = _TwoViewDataset(images, torchvision_simclr_transform(size, *augment.STATS["cifar10"]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)

    def run_round():
        iterator = iter(loader)
        next(iterator)
        start = time.perf_counter()
        count = sum(len(view1) for view1, _ in iterator)
        return count, time.perf_counter() - start

    rate = _best_rate(run_round, rounds)
    del loader  # stop the workers before anything else is timed
    return rate


def images_per_cpu_second(batch_size: int = 512, size: int = 32, rounds: int = 3) -> dict:
    """Images per CPU-second (one thread, ``time.process_time``) of the per-sample and the batched pipeline.
    Unlike wall-clock rates this hardly moves when other jobs share the machine. On an idle machine a DataLoader
    with W workers reaches at most W times the per-sample figure."""
    with _torch_threads(1):
        return _images_per_cpu_second(batch_size, size, rounds)


def _images_per_cpu_second(batch_size: int, size: int, rounds: int) -> dict:
    images = random_images(batch_size, size)
    per_sample = torchvision_simclr_transform(size, *augment.STATS["cifar10"])
    views = augment.simclr_views(size, *augment.STATS["cifar10"])
    generator = torch.Generator().manual_seed(0)

    def timed(run):
        run()  # warm-up
        best = 0.0
        for _ in range(rounds):
            start = time.process_time()
            count = run()
            best = max(best, count / (time.process_time() - start))
        return best

    def run_per_sample():
        for image in images[: batch_size // 2]:
            per_sample(image), per_sample(image)
        return batch_size // 2

    def run_batched():
        views(images, generator)
        return batch_size

    return {"per_sample": timed(run_per_sample), "batched": timed(run_batched)}


def bench_augment(device=None, batch_size: int = 512, size: int = 32, repeats: int = 20, workers: int = 2,
                  rounds: int = 3, threads: int = 2) -> dict:
    """Two-view SimCLR augmentation at ``size`` px: the batched pipeline on ``device`` (CPU with 2 threads; with
    ``device=None`` also CUDA when present) versus torchvision v2 per sample in a ``workers``-process DataLoader
    (CPU). Returns images/s and ratios: {"cpu": ..., "cuda": ... (if run), "loader": ..., "speedup_cpu": ...,
    "speedup_cuda": ... (if run), "cpu_time_per_sample" / "cpu_time_batched": images per CPU-second on one
    thread (see :func:`images_per_cpu_second`)}. The batched side runs first, so the DataLoader's workers are
    gone by then.
    ``threads``: intra-op threads of the batched side (2 on a 2-core machine; on a machine shared with other jobs,
    1 avoids stalls where every op waits for a descheduled second thread); the caller's thread count is restored."""
    with _torch_threads(threads):
        devices = [torch.device(device)] if device is not None else [torch.device("cpu")]
        if device is None and torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        result = {dev.type: batched_images_per_second(dev, batch_size, size, repeats, rounds) for dev in devices}
        result["loader"] = loader_images_per_second(batch_size, size, workers=workers, rounds=rounds)
        for dev in devices:
            result[f"speedup_{dev.type}"] = result[dev.type] / result["loader"]
        cpu = images_per_cpu_second(batch_size, size, rounds)
        result["cpu_time_per_sample"], result["cpu_time_batched"] = cpu["per_sample"], cpu["batched"]
        return result


def _run_augment(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = bench_augment(args.device, args.batch_size, args.size, args.repeats, args.workers, args.rounds,
                           args.threads)
    print(f"two-view SimCLR augmentation, {args.size} px, batch {args.batch_size}, images/s (2 views each); "
          f"{os.cpu_count()} cores, load average {load:.1f} before the run")
    devices = [k for k in ("cuda", "cpu") if k in result]
    rows = [(f"torchvision v2 per sample, DataLoader({args.workers} workers)", result["loader"])]
    threads = f" ({args.threads} thread{'s' * (args.threads != 1)})"
    rows += [(f"batched ssltutor.data.augment on {dev}" + (threads if dev == "cpu" else ""), result[dev])
             for dev in devices]
    for label, rate in rows:
        print(f"  {label:<52}{rate:10.0f}")
    per_sample, batched = result["cpu_time_per_sample"], result["cpu_time_batched"]
    print(f"  images per CPU-second, 1 thread (robust to other load): per sample {per_sample:.0f}, "
          f"batched {batched:.0f}, ratio {batched / per_sample:.1f}x")
    for dev in devices[:-1]:
        print(f"augment speedup ({dev}): {result[f'speedup_{dev}']:.1f}x")
    print(f"augment speedup: {result[f'speedup_{devices[-1]}']:.1f}x")


# ------------------------------------------------------------------------------------------------------------------
# step
# ------------------------------------------------------------------------------------------------------------------


def _step_methods(names, backbone: str, width: int, size: int):
    from .methods import create
    from .models import create_backbone

    for name in names:
        torch.manual_seed(0)
        opts = {"num_classes": 10} if name == "supervised" else {}
        if name == "mocov2plus":
            opts["queue_size"] = 4096
        yield name, create(name, create_backbone(backbone, width=width), image_size=size, **opts)


def bench_step(methods: Sequence[str], backbones: Sequence[str], precisions: Sequence[str], device="cpu",
               batch_size: int = 128, size: int = 32, width: int = 32, repeats: int = 5, compile: bool = False,
               extra_rows: bool = True) -> list[dict]:
    """Rows {method, backbone, precision, images_per_s, ratio}; ratio = this method's step time over the supervised
    step with the same backbone, batch and precision. Prints ``step <method> <backbone> <precision>: <img/s> img/s,
    <ratio>x supervised`` per row."""
    rows = []
    for backbone in backbones:
        for precision in precisions:
            cl = precision != "fp32"
            rates = {}
            for name, method in _step_methods(["supervised", *[m for m in methods if m != "supervised"]], backbone, width, size):
                if compile:
                    method.backbone.compile()
                rates[name] = time_train_step(method, batch_size, size, "bf16" if cl else "fp32", cl, device, repeats)
                label = f"{backbone}{width}" if backbone in CONVNETS else backbone
                row = dict(method=name, backbone=label, precision=("bf16+channels_last" if cl else "fp32")
                           + ("+compile" if compile else ""), images_per_s=rates[name],
                           ratio=rates["supervised"] / rates[name])
                rows.append(row)
                print(f"step {row['method']} {row['backbone']} {row['precision']}: {row['images_per_s']:.0f} img/s, "
                      f"{row['ratio']:.2f}x supervised", flush=True)
    return rows


ENGINE_METHODS = ("supervised", "simclr", "byol", "mocov2plus", "simsiam", "barlow_twins", "vicreg", "swav")


def paper_rows(device="cpu", batch_size: int = 128, size: int = 32, precision: str = "fp32", repeats: int = 5) -> list[dict]:
    """The paper methods' overhead rows: the internal pretext task at each stage position over the supervised step
    (target <= 1.10x at the last stage) and SSL + rotation over the base SSL step (target <= 2.1x)."""
    from .studies.internal import step_time_ratio as internal_ratio
    from .studies.rotation import step_time_ratio as rotation_ratio

    rows = []
    for stage in range(4):
        ratio = internal_ratio(stage, 4, "small_convnet", batch_size, size, precision, repeats, device=device)
        rows.append(dict(method=f"internal@stage{stage}", backbone="small_convnet32", precision=precision, ratio=ratio,
                         reference="supervised"))
    for base in ("simclr", "byol"):
        r = rotation_ratio(base, "small_convnet", batch_size, size, precision, repeats, device=device,
                           channels_last=precision != "fp32")
        rows.append(dict(method=f"{base}+rotation", backbone="small_convnet32", precision=precision,
                         ratio=r["ratio"], reference=base))
    for row in rows:
        print(f"step {row['method']} {row['backbone']} {row['precision']}: {row['ratio']:.2f}x {row['reference']}",
              flush=True)
    return rows


def _run_step(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    methods = args.methods.split(",") if args.methods else list(ENGINE_METHODS)
    bench_step(methods, args.backbones.split(","), args.precisions.split(","), device, args.batch_size, args.size,
               args.width, args.repeats)
    if not args.no_paper_rows:
        for precision in args.precisions.split(","):
            paper_rows(device, args.batch_size, args.size, precision, args.repeats)


# ------------------------------------------------------------------------------------------------------------------
# gpu
# ------------------------------------------------------------------------------------------------------------------


def _run_gpu(args: argparse.Namespace) -> None:
    from .gpucheck import main as gpu_check

    status = gpu_check(args)
    if status:
        raise SystemExit(status)


# ------------------------------------------------------------------------------------------------------------------
# learn
# ------------------------------------------------------------------------------------------------------------------


def bench_learn(methods: Sequence[str], data_root: str | None = None, seeds: Sequence[int] = (0,),
                preset: str = "cpu", overrides: dict | None = None, max_train: int | None = None, device=None,
                record: str | None = None, label: str | None = None, monitor: bool = False) -> list:
    """Train each method at ``preset`` (merged with its per-method recipe and ``overrides``) on CIFAR-10 from
    ``data_root``; print one ``learn ...`` line per method and seed (:meth:`ssltutor.learn.LearnResult.line`),
    then ``learn best: ...``. ``max_train`` caps the train split (the CI smoke). ``monitor``: kNN after every epoch
    on a fixed 10,000 / 5,000 image subset (for accuracy-against-time curves). ``record``: append one row per epoch
    to this CSV (:func:`ssltutor.learn.record_rows`), under ``label``; a run already recorded there (same label,
    method, seed, preset, overrides, train size and merged recipe) is not trained again, its recorded line is
    printed (resume).
    Returns the results."""
    from .data import load
    from .evaluate import KNNMonitor
    from .experiment import cap
    from .learn import append_rows, best_line, learn_run, method_settings, recipe_key, record_rows, recorded_result
    from .presets import preset as get_preset

    settings = get_preset(preset, paper="learn")
    train = cap(load("cifar10", root=data_root, split="train", size=settings["image_size"]), max_train, 0)
    test = load("cifar10", root=data_root, split="test", size=settings["image_size"])
    print(f"learn data: {len(train)} train / {len(test)} test images of {train.name}, preset {preset}, "
          f"{torch.get_num_threads()} threads", flush=True)
    knn_monitor = None
    if monitor:
        pick = torch.Generator().manual_seed(0)
        knn_monitor = KNNMonitor(cap(train, 10_000, 0), test.subset(torch.randperm(len(test), generator=pick)[:5000]),
                                 k=settings["knn_k"])
    results, floors = [], {}
    for seed in seeds:
        for name in methods:
            recipe = recipe_key(method_settings(settings, name, overrides))
            result = (recorded_result(record, label or name, name, seed, preset, overrides, len(train), recipe)
                      if record else None)
            if result is None:
                result = learn_run(name, train, test, settings, seed=seed, overrides=overrides, device=device,
                                   monitor=knn_monitor, floors=floors)
                if record:
                    append_rows(record, record_rows(result, label or name, preset, overrides, len(train), recipe))
            print(result.line(), flush=True)
            results.append(result)
    if any(r.method != "supervised" for r in results):
        print(best_line(results), flush=True)
    return results


def _parse_overrides(pairs: Sequence[str]) -> dict:
    """``["lr=2e-3", "options.temperature=0.5", "backbone=small_convnet"]`` -> dict (values read as JSON, else
    kept as strings)."""
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE (e.g. lr=2e-3 or options.temperature=0.5), got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run_learn(args: argparse.Namespace) -> None:
    from .learn import LEARN_METHODS

    names = list(LEARN_METHODS) if args.methods in (None, "all") else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in names if m not in LEARN_METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}: choose from {', '.join(LEARN_METHODS)} or 'all'")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds must be comma-separated integers like 0,1,2, got {args.seeds!r}") from None
    overrides = _parse_overrides(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    with _torch_threads(args.threads):
        bench_learn(names, args.data_root, seeds, args.preset, overrides, args.max_train, args.device, args.record,
                    args.label, args.monitor)


# ------------------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """One subparser per benchmark; each sets ``func`` to the function that runs it."""
    parser = argparse.ArgumentParser(prog="python -m ssltutor.bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    aug = commands.add_parser("augment", help="batched vs per-sample (DataLoader) two-view augmentation")
    aug.add_argument("--device", default=None, help="cpu or cuda (default: cpu, plus cuda when present)")
    aug.add_argument("--batch-size", type=int, default=512)
    aug.add_argument("--size", type=int, default=32)
    aug.add_argument("--repeats", type=int, default=20, help="timed batches of the batched pipeline")
    aug.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the baseline")
    aug.add_argument("--rounds", type=int, default=3, help="timing rounds per side; the best round counts")
    aug.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the batched side")
    aug.set_defaults(func=_run_augment)
    step = commands.add_parser("step", help="train-step images/s per method and its ratio to a supervised step")
    step.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    step.add_argument("--methods", default=None, help="comma-separated (default: the eight engine methods)")
    step.add_argument("--backbones", default="small_convnet,resnet18")
    step.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (bf16 runs with channels_last)")
    step.add_argument("--batch-size", type=int, default=128)
    step.add_argument("--size", type=int, default=32)
    step.add_argument("--width", type=int, default=32, help="small_convnet width")
    step.add_argument("--repeats", type=int, default=5)
    step.add_argument("--threads", type=int, default=2)
    step.add_argument("--no-paper-rows", action="store_true", help="skip the internal-pretext and rotation rows")
    step.set_defaults(func=_run_step)
    learn = commands.add_parser("learn", help="train each method at the cpu preset on CIFAR-10; frozen-feature "
                                "probe and kNN vs the random-init backbone")
    learn.add_argument("--methods", default=None, help="comma-separated, or 'all' (default: supervised + the seven "
                       "SSL objectives)")
    learn.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py/ (default: $DATA_ROOT)")
    learn.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    learn.add_argument("--preset", default="cpu", help="smoke or cpu (the recipe of PAPER_PRESETS['learn'])")
    learn.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (CI smoke: 1)")
    learn.add_argument("--max-train", type=int, default=None, help="use at most this many train images")
    learn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change the recipe, e.g. --set lr=2e-3 --set options.temperature=0.5 (repeatable)")
    learn.add_argument("--monitor", action="store_true", help="kNN after every epoch (10k/5k image subset)")
    learn.add_argument("--record", default=None, help="append one row per epoch to this CSV")
    learn.add_argument("--label", default=None, help="the runs' label in --record (default: the method)")
    learn.add_argument("--threads", type=int, default=2)
    learn.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    learn.set_defaults(func=_run_learn)
    gpu = commands.add_parser("gpu", help="the GPU check (ssltutor.gpucheck): CUDA code paths, every method's step "
                              "on ResNet-18, one SimCLR epoch, short colab runs of the paper notebooks")
    from .gpucheck import add_arguments as gpu_arguments

    gpu_arguments(gpu)
    gpu.set_defaults(func=_run_gpu)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
