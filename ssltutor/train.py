"""The one training loop of the package.

``fit(method, data, epochs=...)`` moves the uint8 dataset to the device once, draws a permutation per epoch from one
seeded ``torch.Generator`` (which also drives every augmentation), and calls ``method.step`` on each batch. It handles
the optimizer (SGD, LARS, Adam, AdamW), warmup + cosine learning rate, mixed precision (bf16 on CPU and GPU, fp16 with
a grad scaler on CUDA), channels_last, optional ``torch.compile``, gradient clipping, atomic checkpoints with exact
resume, a tqdm progress bar, callbacks (e.g. kNN accuracy each epoch) and the history as pandas DataFrames.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .distributed import convert_sync_batchnorm, launch_context
from .data.loader import DeviceLoader
from .methods.base import Batch, Method

OPTIMIZERS = ("sgd", "lars", "adam", "adamw")
PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_NAME = "checkpoint.pt"


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017, arXiv 1708.03888).

    For each parameter w with gradient g, weight decay wd and learning rate lr (solo-learn's and the FKT code's
    rule, the same formula)::

        ratio = trust_coefficient * ||w|| / (||g|| + wd * ||w|| + eps)     (1 where ||w|| or ||g|| is 0)
        ratio = min(ratio / lr, 1)                                        if clip
        d     = (g + wd * w) * ratio
        buf   = momentum * buf + d;   w -= lr * (d + momentum * buf if nesterov else buf)

    Options, by paper: CaSSLe/solo-learn: ``trust_coefficient=0.02, clip=True`` with biases and norms excluded
    (their groups are flagged ``lars_exclude`` by ``Method.parameter_groups`` and then get neither the scaling nor
    weight decay); EffSSL (SwAV's LARS): ``trust_coefficient=0.001, clip=False``; FKT's ``finetune.py``:
    ``trust_coefficient=0.001, clip=False, nesterov=True`` on every parameter (groups built with
    ``exclude_bias_norm=False``). ``exclude=False`` scales flagged groups too (their weight decay stays theirs).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.02, clip: bool = True, nesterov: bool = False,
                 exclude: bool = True, eps: float = 1e-8):
        if not trust_coefficient > 0:
            raise ValueError(f"trust_coefficient must be > 0 (0.02 solo-learn, 0.001 SwAV/FKT), got "
                             f"{trust_coefficient}")
        if nesterov and not momentum > 0:
            raise ValueError(f"nesterov=True needs momentum > 0, got {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, clip=clip, nesterov=nesterov, eps=eps,
                                      lars_exclude=False))
        self.exclude = exclude

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            adapt = not (self.exclude and group["lars_exclude"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                if adapt:
                    d = d * self._ratio(p, p.grad, group)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(d.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf, alpha=-group["lr"])

    @staticmethod
    def _ratio(p: torch.Tensor, grad: torch.Tensor, group: dict) -> torch.Tensor:
        """The layer's LARS factor (a 0-d tensor: no host sync), clipped at 1 / lr when ``clip``."""
        w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
        ratio = group["trust_coefficient"] * w_norm / (g_norm + group["weight_decay"] * w_norm + group["eps"])
        ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
        if group["clip"]:
            ratio = torch.clamp(ratio / group["lr"], max=1.0) if group["lr"] > 0 else torch.ones_like(ratio)
        return ratio


OPTIMIZER_OPTIONS = {"sgd": ("nesterov",), "lars": ("trust_coefficient", "clip", "nesterov", "exclude"),
                     "adam": (), "adamw": ()}


def make_optimizer(groups: list[dict], name: str, lr: float, momentum: float = 0.9,
                   options: dict | None = None) -> torch.optim.Optimizer:
    """Build one of :data:`OPTIMIZERS` over parameter groups (each carries its own weight decay).

    options: extra constructor options, per optimizer :data:`OPTIMIZER_OPTIONS` (SGD ``nesterov``; LARS
    ``trust_coefficient``, ``clip``, ``nesterov``, ``exclude``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIMIZER_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(OPTIMIZER_OPTIONS[name]) or "none"
        raise ValueError(f"optimizer {name!r} takes no option(s) {unknown}: its options are {allowed}")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **options)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, **options)
    clean = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    return (torch.optim.Adam if name == "adam" else torch.optim.AdamW)(clean, lr=lr)


SCHEDULES = ("cosine", "constant", "step")


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0,
          schedule: str = "cosine", milestones: Iterable[int] = ()) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``total_steps``: linear warmup from 0 over
    ``warmup_steps``, then ``"cosine"`` decay to ``min_lr`` at the last step, ``"constant"``, or ``"step"``:
    ``base_lr * 0.1 ** (number of milestones <= step)`` (``milestones`` in steps, CaSSLe's probe). The one schedule
    of the package: ``fit`` and ``evaluate.linear_probe`` both call it."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        milestones = tuple(milestones)
        if not milestones:
            raise ValueError("schedule='step' needs milestones (the steps at which the lr drops x0.1)")
        return base_lr * 0.1 ** sum(step >= m for m in milestones)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class History:
    """``steps``: one row per optimizer step (epoch, step, loss, lr, metrics, images_per_s); ``epochs``: per-epoch
    means plus callback metrics and the epoch's wall time."""

    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(lambda f: self.steps.to_csv(f, index=False), folder / "history_steps.csv", text=True)
        _atomic_write(lambda f: self.epochs.to_csv(f, index=False), folder / "history_epochs.csv", text=True)


@dataclass
class FitState:
    """What callbacks see at the end of an epoch."""

    method: Method
    epoch: int
    step: int
    device: torch.device
    history: History


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite."""


def _atomic_write(write: Callable, path: Path, text: bool = False) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w" if text else "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" picks CUDA when present, else MPS, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available: use device='cpu' or 'auto'")
    return device


def _check_args(epochs, batch_size, n, optimizer, precision, device, lr, drop_last, schedule):
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (batch statistics and contrastive losses need pairs), got {batch_size}")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} images): lower batch_size")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"fit's schedule must be 'cosine' or 'constant', got {schedule!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs CUDA (it uses a grad scaler); use 'bf16' on CPU")
    if lr is not None and lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")


def fit(method: Method, data, *, epochs: int, batch_size: int = 256, optimizer: str = "sgd", lr: float | None = None,
        weight_decay: float = 5e-4, momentum: float = 0.9, warmup_epochs: float = 0, min_lr: float = 0.0,
        schedule: str = "cosine", precision: str = "fp32", channels_last: bool = False, compile: bool = False,
        grad_clip: float | None = None, device: str | torch.device | None = None, seed: int = 0,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int = 1, resume: bool = False,
        callbacks: Iterable[Callable[[FitState], dict | None]] = (), progress: bool = True, log_every: int = 1,
        drop_last: bool = True, distributed: bool | None = None, sync_batchnorm: bool = False,
        optimizer_options: dict | None = None, exclude_bias_norm: bool | None = None) -> History:
    """Train ``method`` on ``data`` (an ``ImageDataset`` or a pair ``(images uint8, labels)``) for ``epochs``.

    lr: defaults to 0.05 * batch_size / 256 for SGD/LARS and 1e-3 for Adam/AdamW (linear scaling rule).
    optimizer_options: passed to the optimizer (:func:`make_optimizer`: SGD ``nesterov``, LARS
    ``trust_coefficient``, ``clip``, ``nesterov``, ``exclude``). exclude_bias_norm: whether biases and norms get
    no weight decay (and no LARS scaling); None: the method's own choice (``Method.exclude_bias_norm``).
    checkpoint_dir: where ``checkpoint.pt`` (every ``checkpoint_every`` epochs, written atomically) and the history
    CSVs go; ``resume=True`` continues from the checkpoint there and reaches the same weights as an uninterrupted run
    (bitwise on CPU with the same seed and thread count).
    callbacks: called with a :class:`FitState` after each epoch; a returned dict is added to the epoch's history row.
    distributed: None runs data-parallel when launched by ``torchrun`` (WORLD_SIZE > 1), True always, False never
    (see :mod:`ssltutor.distributed`): ``batch_size`` is then the global batch, split evenly over the ranks, and only
    rank 0 writes checkpoints, history and progress. sync_batchnorm: batch statistics over the global batch.
    Returns a :class:`History`.
    """
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    device = resolve_device(device)
    _check_args(epochs, batch_size, len(images), optimizer, precision, device, lr, drop_last, schedule)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder holding checkpoint.pt)")
    ctx = launch_context(distributed, device, batch_size, drop_last)  # None: a single process, as before
    if lr is None:
        lr = 1e-3 if optimizer in ("adam", "adamw") else 0.05 * batch_size / 256
    run = _prepare(method, images, labels, ctx=ctx, device=ctx.device if ctx is not None else device,
                   epochs=epochs, batch_size=batch_size, drop_last=drop_last, seed=seed, optimizer=optimizer, lr=lr,
                   weight_decay=weight_decay, momentum=momentum, optimizer_options=optimizer_options,
                   exclude_bias_norm=exclude_bias_norm, precision=precision, channels_last=channels_last,
                   compile=compile, sync_batchnorm=sync_batchnorm, progress=progress)
    run.schedule = dict(warmup_steps=int(warmup_epochs * run.steps_per_epoch), base_lr=lr, min_lr=min_lr,
                        schedule=schedule)
    run.ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and run.ckpt_path.exists():
        _load_checkpoint(run)
    if ctx is not None:
        ctx.check_same_on_all_ranks(run.start_epoch,
                                    "resumed epoch (checkpoint_dir must be on storage every node sees)")

    method.train()
    for epoch in range(run.start_epoch, epochs):
        t_epoch = time.perf_counter()
        _train_epoch(run, epoch, grad_clip, log_every)
        _end_of_epoch(run, epoch, time.perf_counter() - t_epoch, callbacks)
        if run.ckpt_path is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs) and run.main:
            _save_checkpoint(run, epoch)
        if ctx is not None and run.ckpt_path is not None:
            ctx.barrier()  # no rank runs ahead of (or resumes from) a checkpoint rank 0 is still writing
    run.history.steps, run.history.epochs = pd.DataFrame(run.step_rows), pd.DataFrame(run.epoch_rows)
    method.eval()
    return run.history


@dataclass
class _Run:
    """What one ``fit`` call carries between its parts (:func:`_prepare`, :func:`_train_epoch`,
    :func:`_end_of_epoch`, :func:`_save_checkpoint` / :func:`_load_checkpoint`)."""

    method: Method
    ctx: object  # ``ssltutor.distributed`` launch context, None in a single process
    device: torch.device
    epochs: int
    seed: int
    generator: torch.Generator
    loader: DeviceLoader
    opt: torch.optim.Optimizer
    lr_scales: list[float]
    scaler: object
    autocast_dtype: torch.dtype | None
    train_step: Callable
    main: bool  # the process that writes files and shows progress
    show: bool
    sync_batchnorm: bool
    schedule: dict = field(default_factory=dict)  # lr_at's keyword arguments but step and total_steps
    ckpt_path: Path | None = None
    start_epoch: int = 0
    global_step: int = 0
    step_rows: list[dict] = field(default_factory=list)
    epoch_rows: list[dict] = field(default_factory=list)
    history: History = field(default_factory=History)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def _prepare(method: Method, images, labels, *, ctx, device, epochs, batch_size, drop_last, seed, optimizer, lr,
             weight_decay, momentum, optimizer_options, exclude_bias_norm, precision, channels_last, compile,
             sync_batchnorm, progress) -> _Run:
    """The method on the device (channels_last, compiled, sync BN as asked), the seeded generator and loader, the
    optimizer over the method's parameter groups and the mixed-precision pieces."""
    method.to(device)
    if channels_last:
        method.use_channels_last()
    if compile:
        method.backbone.compile()
    if ctx is not None and sync_batchnorm:
        convert_sync_batchnorm(method, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    loader = DeviceLoader(images, labels, batch_size, shuffle=True, drop_last=drop_last, generator=generator,
                          device=device)
    if len(loader) == 0:
        raise ValueError(f"no full batch of {batch_size} in {len(images)} images: lower batch_size or set "
                         "drop_last=False")
    opt = make_optimizer(method.parameter_groups(weight_decay, exclude_bias_norm), optimizer, lr, momentum,
                         optimizer_options)
    main = ctx is None or ctx.is_main
    # Distributed: DDP sees Method.forward (= step); each rank takes its shard of the global batch and augments it
    # with its own generator (the shared one only draws the permutation, identically on every rank).
    return _Run(method=method, ctx=ctx, device=device, epochs=epochs, seed=seed, generator=generator, loader=loader,
                opt=opt, lr_scales=[g.get("lr_scale", 1.0) for g in opt.param_groups],
                scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
                autocast_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision),
                train_step=method.step if ctx is None else ctx.wrap(method), main=main, show=progress and main,
                sync_batchnorm=sync_batchnorm)


def _load_checkpoint(run: _Run) -> None:
    """Continue from ``run.ckpt_path``: weights, optimizer, grad scaler, generator state, position and history."""
    state = torch.load(run.ckpt_path, map_location=run.device, weights_only=True)
    run.method.load_state_dict(state["method"])
    run.opt.load_state_dict(state["optimizer"])
    if run.scaler is not None and "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    run.generator.set_state(state["generator"].cpu())
    run.start_epoch, run.global_step = state["epoch"], state["step"]
    run.step_rows, run.epoch_rows = list(state["step_rows"]), list(state["epoch_rows"])


def _optimizer_step(run: _Run, batch: Batch, grad_clip: float | None) -> dict[str, torch.Tensor]:
    """One step: the method's loss under autocast, backward (scaled for fp16), optional clipping, the update."""
    with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.autocast_dtype is not None):
        out = run.train_step(batch)
    loss = out["loss"]
    run.opt.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.opt)
    else:
        loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(run.method.parameters(), grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.opt)
        run.scaler.update()
    else:
        run.opt.step()
    return out


def _train_epoch(run: _Run, epoch: int, grad_clip: float | None, log_every: int) -> None:
    """Every batch of one epoch: the scheduled lr, :func:`_optimizer_step`, the method's end-of-step hook and the
    per-step rows (flushed to host every ``log_every`` steps and at the epoch's end)."""
    ctx, method = run.ctx, run.method
    method.on_epoch_start(epoch)
    augment_generator = run.generator if ctx is None else ctx.augmentation_generator(run.seed, epoch)
    pending: list[tuple[int, dict[str, torch.Tensor], float]] = []
    bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{run.epochs}", leave=False, disable=not run.show)
    t_last = time.perf_counter()
    for x, y in bar:
        lr_now = lr_at(run.global_step, run.total_steps, **run.schedule)
        for group, scale in zip(run.opt.param_groups, run.lr_scales):
            group["lr"] = lr_now * scale
        batch = Batch(x, y, run.generator) if ctx is None else Batch(ctx.shard(x), ctx.shard(y), augment_generator)
        out = _optimizer_step(run, batch, grad_clip)
        run.global_step += 1
        method.on_step_end(run.global_step / run.total_steps)
        metrics = {k: v.detach() for k, v in out.items() if torch.is_tensor(v)}  # not views / z
        pending.append((run.global_step, metrics if ctx is None else ctx.average(metrics), lr_now))
        if len(pending) >= log_every or run.global_step % run.steps_per_epoch == 0:
            rows = _flush(pending, epoch, x.shape[0], time.perf_counter() - t_last, run.ckpt_path)
            run.step_rows.extend(rows)
            t_last = time.perf_counter()
            pending = []
            if run.show:
                bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", lr=f"{lr_now:.3g}",
                                img_s=f"{rows[-1]['images_per_s']:.0f}")


def _end_of_epoch(run: _Run, epoch: int, epoch_time: float, callbacks) -> dict:
    """The epoch's history row: means of its steps, its wall time, then what each callback returns."""
    if run.ctx is not None and not run.sync_batchnorm:
        run.ctx.average_batchnorm_statistics(run.method)
    df = pd.DataFrame(run.step_rows)
    row = {"epoch": epoch + 1, "step": run.global_step, "time_s": epoch_time,
           **df[df.epoch == epoch + 1].drop(columns=["epoch", "step"]).mean(numeric_only=True).to_dict()}
    run.history.steps = df
    state = FitState(run.method, epoch + 1, run.global_step, run.device, run.history)
    for cb in callbacks:
        extra = cb(state)
        if extra:
            row.update(extra)
    run.method.train()
    run.epoch_rows.append(row)
    run.history.epochs = pd.DataFrame(run.epoch_rows)
    if run.show:
        tqdm.write(f"epoch {epoch + 1}/{run.epochs}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "step") and isinstance(v, float)))
    return row


def _save_checkpoint(run: _Run, epoch: int) -> None:
    """``checkpoint.pt`` (written atomically) with everything :func:`_load_checkpoint` restores, and the
    history CSVs beside it."""
    run.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    state = {"method": run.method.state_dict(), "optimizer": run.opt.state_dict(),
             "generator": run.generator.get_state(), "epoch": epoch + 1, "step": run.global_step,
             "step_rows": run.step_rows, "epoch_rows": run.epoch_rows}
    if run.scaler is not None:
        state["scaler"] = run.scaler.state_dict()
    _atomic_write(lambda f: torch.save(state, f), run.ckpt_path)
    run.history.save(run.ckpt_path.parent)


def _flush(pending, epoch, batch_size, elapsed, ckpt_path) -> list[dict]:
    rows = []
    stacked = {k: torch.stack([p[1][k].float().reshape(()) for p in pending]).cpu() for k in pending[0][1]}
    per_step = elapsed / len(pending)
    for i, (step, _, lr_now) in enumerate(pending):
        row = {"epoch": epoch + 1, "step": step, "lr": lr_now}
        row.update({k: float(v[i]) for k, v in stacked.items()})
        row["images_per_s"] = batch_size / per_step if per_step > 0 else float("nan")
        if not math.isfinite(row["loss"]):
            where = f"the last good checkpoint {ckpt_path} is untouched" if ckpt_path else "no checkpoint was written"
            raise NonFiniteLossError(
                f"loss is {row['loss']} at step {step} (epoch {epoch + 1}); {where}. Lower the learning rate, "
                "set grad_clip, or train in fp32")
        rows.append(row)
    return rows
