"""Benchmarks: ``python -m ssltutor.bench <subcommand>``.

``augment``: images/s of SimCLR's two-view augmentation, batched on the device (:mod:`ssltutor.data.augment`)
versus the usual per-sample ``torchvision.transforms.v2`` pipeline behind a ``DataLoader`` with worker processes,
on the same uint8 images; ends with the line ``augment speedup: N.Nx``.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Sequence

import torch

from .data import augment

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


def _random_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(run_round, rounds: int) -> float:
    """Highest images/s over ``rounds`` calls of ``run_round() -> (images, seconds)``: on a shared machine the
    best round is the one least disturbed by other processes (timeit's rule)."""
    return max(images / seconds for images, seconds in (run_round() for _ in range(rounds)))


def batched_images_per_second(device, batch_size: int = 512, size: int = 32, repeats: int = 20, rounds: int = 3,
                              dtype: torch.dtype = torch.float32) -> float:
    """Images/s (two views each) of :func:`augment.simclr_views` on one uint8 batch already on ``device``;
    best of ``rounds`` rounds of ``repeats`` batches."""
    device = torch.device(device)
    images = _random_images(batch_size, size).to(device)
    views = augment.simclr_views(size, *augment.STATS["cifar10"], dtype=dtype)
    generator = torch.Generator(device).manual_seed(0)
    for _ in range(3):  # warm-up: allocator, kernels, CUDA context
        views(images, generator)

    def run_round():
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            views(images, generator)
        _synchronize(device)
        return batch_size * repeats, time.perf_counter() - start

    return _best_rate(run_round, rounds)


def loader_images_per_second(batch_size: int = 512, size: int = 32, batches: int = 6, workers: int = 2,
                             rounds: int = 3) -> float:
    """Images/s (two views each) of the per-sample torchvision v2 pipeline through a DataLoader with ``workers``
    processes; best of ``rounds`` epochs of ``batches`` batches. Each epoch's first batch (worker start-up,
    pipeline fill) is not timed, which if anything flatters the DataLoader."""
    images = _random_images(batch_size * batches, size)
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
    torch.set_num_threads(1)
    images = _random_images(batch_size, size)
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
    1 avoids stalls where every op waits for a descheduled second thread)."""
    torch.set_num_threads(threads)
    devices = [torch.device(device)] if device is not None else [torch.device("cpu")]
    if device is None and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    result = {dev.type: batched_images_per_second(dev, batch_size, size, repeats, rounds) for dev in devices}
    result["loader"] = loader_images_per_second(batch_size, size, workers=workers, rounds=rounds)
    for dev in devices:
        result[f"speedup_{dev.type}"] = result[dev.type] / result["loader"]
    cpu = images_per_cpu_second(batch_size, size, rounds)
    result["cpu_time_per_sample"], result["cpu_time_batched"] = cpu["per_sample"], cpu["batched"]
    torch.set_num_threads(threads)
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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
