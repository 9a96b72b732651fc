"""The step timer shared by ``python -m ssltutor.bench`` and the studies.

* :func:`training_step`: one full training step of a method on a fixed batch (views, forward, backward, SGD
  update, end-of-step hook), as a closure the timers call repeatedly.
* :func:`seconds_per_step`: mean seconds of a few calls of such a closure, CUDA synchronised, wall or CPU clock.
* :func:`fastest_steps`: several closures timed alternately, each keeping its fastest round (timeit's rule: on a
  shared machine the fastest round is the least disturbed, and alternating slows every closure alike).
* :func:`time_train_step`: images/s of one method's training step.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import torch

from .methods import Batch, Method
from .train import make_optimizer

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def synchronize(device: torch.device | str) -> None:
    """Wait for the queued CUDA work of ``device`` (a no-op elsewhere), so that a clock read after it is honest."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_images(count: int, size: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """(count, 3, size, size) uniform random uint8 images, drawn on the CPU from ``seed`` (the same on every
    device), then moved to ``device``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return images.to(device)


def training_step(method: Method, images: torch.Tensor, labels: torch.Tensor, precision: str = "fp32",
                  device="cpu", seed: int = 0) -> Callable[[], None]:
    """One full training step of ``method`` on a fixed batch (views, forward, backward, SGD update, EMA/queue
    hook), as a closure the timers call repeatedly."""
    device = torch.device(device)
    generator = torch.Generator(device).manual_seed(seed)
    opt = make_optimizer(method.parameter_groups(0.0), "sgd", lr=1e-3)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    method.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = method.step(Batch(images, labels, generator))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.on_step_end(0.5)

    return step


def seconds_per_step(step: Callable[[], None], device="cpu", repeats: int = 1, clock: str = "wall") -> float:
    """Mean seconds of ``repeats`` calls of ``step`` (a closure like :func:`training_step`'s), CUDA synchronised
    before and after. ``clock``: ``"wall"`` (what a user waits) or ``"cpu"`` (process CPU time, steadier when
    other jobs share the CPU)."""
    check_clock(clock)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    now = CLOCKS[clock]
    synchronize(device)
    start = now()
    for _ in range(repeats):
        step()
    synchronize(device)
    return (now() - start) / repeats


def check_clock(clock: str, device=None) -> None:
    """A ValueError unless ``clock`` is a key of :data:`CLOCKS` (and ``"cpu"`` only with a CPU ``device``)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and device is not None and torch.device(device).type != "cpu":
        raise ValueError("clock='cpu' measures process CPU time: use it with device='cpu', or clock='wall'")


def fastest_steps(steps: Mapping[str, Callable[[], None]], device="cpu", rounds: int = 5, repeats: int = 1,
                  warmup: int = 2, clock: str = "wall") -> dict[str, float]:
    """{name: fastest seconds per step} of closures timed alternately: ``warmup`` untimed calls of each
    (allocator, kernels, queues), then ``rounds`` rounds in which each closure runs ``repeats`` steps."""
    if rounds < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"rounds and repeats must be >= 1 and warmup >= 0, got {rounds}, {repeats} and {warmup}")
    check_clock(clock, device)
    for step in steps.values():
        for _ in range(warmup):
            step()
    best = {name: float("inf") for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            best[name] = min(best[name], seconds_per_step(step, device, repeats, clock))
    return best


def time_train_step(method: Method, batch_size: int = 128, size: int = 32, precision: str = "fp32",
                    channels_last: bool = False, device="cpu", repeats: int = 5, warmup: int = 2,
                    num_classes: int = 10) -> float:
    """Images/s of one full training step (augmentation, forward, backward, SGD update, EMA/queue hook) of
    ``method`` on a uint8 batch resident on ``device``; median of ``repeats`` timed steps after ``warmup``."""
    device = torch.device(device)
    method.to(device).train()
    if channels_last:
        method.use_channels_last()
    images = random_images(batch_size, size, device=device)
    labels = torch.arange(batch_size, device=device) % num_classes
    step = training_step(method, images, labels, precision, device)
    times = [seconds_per_step(step, device) for _ in range(warmup + repeats)][warmup:]
    return batch_size / sorted(times)[len(times) // 2]


__all__ = ["CLOCKS", "synchronize", "random_images", "training_step", "seconds_per_step", "check_clock",
           "fastest_steps", "time_train_step"]
