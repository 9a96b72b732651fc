"""Benchmarks: ``python -m ssltutor.bench <subcommand>``.

``augment``: images/s of SimCLR's two-view augmentation, batched on the device (:mod:`ssltutor.data.augment`)
versus the usual per-sample ``torchvision.transforms.v2`` pipeline behind a ``DataLoader`` with worker processes,
on the same uint8 images; ends with the line ``augment speedup: N.Nx``.
"""
from __future__ import annotations

import argparse
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


def batched_images_per_second(device, batch_size: int = 512, size: int = 32, repeats: int = 20,
                              dtype: torch.dtype = torch.float32) -> float:
    """Images/s (two views each) of :func:`augment.simclr_views` on one uint8 batch already on ``device``."""
    device = torch.device(device)
    images = _random_images(batch_size, size).to(device)
    views = augment.simclr_views(size, *augment.STATS["cifar10"], dtype=dtype)
    generator = torch.Generator(device).manual_seed(0)
    for _ in range(3):  # warm-up: allocator, kernels, CUDA context
        views(images, generator)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        views(images, generator)
    _synchronize(device)
    return batch_size * repeats / (time.perf_counter() - start)


def loader_images_per_second(batch_size: int = 512, size: int = 32, batches: int = 8, workers: int = 2) -> float:
    """Images/s (two views each) of the per-sample torchvision v2 pipeline through a DataLoader with ``workers``
    processes; the first batch (worker start-up) is not timed."""
    images = _random_images(batch_size * (batches + 1), size)
    dataset = _TwoViewDataset(images, torchvision_simclr_transform(size, *augment.STATS["cifar10"]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = sum(len(v1) for v1, _ in iterator)
    return count / (time.perf_counter() - start)


def bench_augment(device=None, batch_size: int = 512, size: int = 32, repeats: int = 20, workers: int = 2,
                  loader_batches: int = 8) -> dict:
    """Two-view SimCLR augmentation at ``size`` px: batched pipeline on ``device`` (CPU with 2 threads; also CUDA
    when ``device`` is None and CUDA is present) versus torchvision v2 per sample in a ``workers``-process
    DataLoader (always CPU). Returns {"loader": img/s, "cpu": img/s, "cuda": img/s (if run), "speedup_cpu": x,
    "speedup_cuda": x (if run)}."""
    torch.set_num_threads(2)
    devices = [torch.device(device)] if device is not None else [torch.device("cpu")]
    if device is None and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    result = {"loader": loader_images_per_second(batch_size, size, loader_batches, workers)}
    for dev in devices:
        result[dev.type] = batched_images_per_second(dev, batch_size, size, repeats)
        result[f"speedup_{dev.type}"] = result[dev.type] / result["loader"]
    return result


def _run_augment(args: argparse.Namespace) -> None:
    result = bench_augment(args.device, args.batch_size, args.size, args.repeats, args.workers)
    print(f"two-view SimCLR augmentation, {args.size} px, batch {args.batch_size} (images/s, 2 views each)")
    print(f"  torchvision v2 per sample, DataLoader({args.workers} workers): {result['loader']:10.0f}")
    devices = [k for k in ("cuda", "cpu") if k in result]
    for dev in devices:
        threads = " (2 threads)" if dev == "cpu" else ""
        print(f"  batched ssltutor.data.augment on {dev}{threads}:{' ' * (14 - len(dev) - len(threads))}"
              f"{result[dev]:10.0f}")
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
    aug.set_defaults(func=_run_augment)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
