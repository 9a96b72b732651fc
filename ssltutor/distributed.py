"""Data-parallel training on many GPUs or nodes with ``torch.distributed``: the standard engine (DDP launched by
``torchrun``), plus the two pieces SSL needs on top of it.

``fit`` calls :func:`launch_context` once. Outside ``torchrun`` it returns ``None`` and nothing changes. Under
``torchrun`` (or ``fit(distributed=True)``) it checks the launch (rendezvous variables, backend, a batch the world
size divides), joins the process group and returns a :class:`DistributedContext`; ``fit`` then

* wraps the method in ``DistributedDataParallel`` (``Method.forward`` is ``step``, so DDP sees the forward pass and
  averages the gradients over the ranks),
* draws the same global permutation on every rank (the run's seeded generator) and gives rank ``r`` the contiguous
  slice ``r * B / W : (r + 1) * B / W`` of each global batch of ``B = batch_size`` images,
* draws augmentations from a per-rank generator seeded by (seed, rank, epoch), so no two ranks share crops and a
  resumed run is exact,
* averages the logged metrics over the ranks and lets only rank 0 write checkpoints, history and the progress bar.

Losses that need the whole batch (NT-Xent's negatives, Barlow Twins' and VICReg's batch statistics, SwAV's
Sinkhorn, MoCo's queue) call :func:`gather_with_grad` on their embeddings: an all-gather whose backward sends each
rank the gradient of its own rows summed over every rank's loss. With DDP's gradient averaging this gives exactly
the update of one process with the global batch (``tests/test_distributed.py`` checks it on two CPU processes).
"""
from __future__ import annotations

import atexit
import hashlib
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "RENDEZVOUS_VARIABLES", "DistributedError", "DistributedContext", "AllReduceBatchNorm", "all_reduce_with_grad",
    "convert_sync_batchnorm", "gather_with_grad", "init_distributed", "is_distributed", "is_main_process",
    "launch_context", "rank", "world_size",
]

# What torchrun exports to every process (LOCAL_RANK too; it defaults to RANK when a launcher leaves it out).
RENDEZVOUS_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
BACKENDS = ("gloo", "nccl", "mpi", "ucc", "xccl")
LAUNCH_HINT = ("launch with `torchrun --nproc_per_node N script.py` (one node) or `torchrun --nnodes M "
               "--node_rank K --nproc_per_node N --rdzv_endpoint HOST:PORT script.py` (several nodes)")


class DistributedError(RuntimeError):
    """A launch that cannot train: missing rendezvous variables, a backend this build lacks, a batch the world size
    does not divide. Raised on every rank before training starts."""


# --------------------------------------------------------------------------------------------------------- queries
def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank (then the gathers below communicate)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0, the one that writes files and prints (always True in a single process)."""
    return rank() == 0


# ------------------------------------------------------------------------------------------ collectives with autograd
class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank computed its loss from all rows; the rows of this rank get the sum of those gradients.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        rows = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * rows : (dist.get_rank() + 1) * rows]


class _AllReduceWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous().clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """x: (b, ...) this rank's rows -> (W * b, ...) every rank's rows in rank order; identity outside a process group.

    Every rank must pass the same shape. Backward: all-reduce (sum) of the incoming gradient, then this rank's slice.
    Why the sum is right: each rank's loss L_r depends on all rows, so this rank's rows receive sum_r dL_r/dz; DDP
    then averages parameter gradients over the W ranks, which is the gradient of mean_r L_r. For a loss computed
    from the gathered batch every L_r equals the full-batch loss L, so the update is that of one process with the
    whole batch (no extra factor W on the loss).
    """
    return _GatherWithGrad.apply(x) if is_distributed() else x


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over the ranks with gradients flowing back to every rank (sum again in backward, see
    :func:`gather_with_grad`); identity outside a process group."""
    return _AllReduceWithGrad.apply(x) if is_distributed() else x


# ------------------------------------------------------------------------------------------------------ batch norm
class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, for CPU ranks (gloo), where PyTorch's
    ``nn.SyncBatchNorm`` does not run: mean and biased variance are two all-reduced sums (with autograd through
    :func:`all_reduce_with_grad`); the running variance uses the unbiased global estimate, as BatchNorm does. Outside
    training or a process group it is plain BatchNorm. Any input (B, C, ...) works."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (B, C, ...), got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in float32 at least
        count = xf.numel() // xf.shape[1] * dist.get_world_size()
        mean = all_reduce_with_grad(xf.sum(dims)) / count
        centered = xf - mean.view(shape)
        var = all_reduce_with_grad(centered.pow(2).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_((var * count / max(count - 1, 1)).to(self.running_var.dtype), momentum)
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``module`` normalising with global-batch statistics, sharing its parameters and
    buffers: ``nn.SyncBatchNorm`` on GPUs, :class:`AllReduceBatchNorm` on CPU. Returns the converted module (the same
    object unless ``module`` itself is a BatchNorm layer)."""
    if torch.device(device).type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        converted = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                       module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, device))
    return converted


# ---------------------------------------------------------------------------------------------------------- launch
@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its node, its ``device``
    (``cuda:<local_rank>`` on GPUs) and the ``backend``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """This rank's contiguous slice of a global batch (B, ...) -> (B / W, ...)."""
        if x is None:
            return None
        rows = x.shape[0] // self.world_size
        return x[self.rank * rows : (self.rank + 1) * rows]

    def wrap(self, method: nn.Module) -> nn.parallel.DistributedDataParallel:
        """DDP around the method (call the wrapper with a Batch: ``Method.forward`` runs ``step``).
        ``find_unused_parameters``: some steps leave parameters out (SwAV's frozen prototypes). Buffers are not
        broadcast each step (a MoCo queue would be re-sent every step); see :meth:`average_batchnorm_statistics`."""
        ddp = nn.parallel.DistributedDataParallel
        # Buffers are synced once at start either way; newer PyTorch renamed the per-step switch.
        no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                          else {"broadcast_buffers": False})
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return ddp(method, device_ids=device_ids, find_unused_parameters=True, **no_buffer_sync)

    def augmentation_generator(self, seed: int, epoch: int) -> torch.Generator:
        """A generator for this rank's augmentations in ``epoch``, seeded from (seed, rank, epoch): ranks draw
        different crops, and a run resumed at an epoch boundary draws the same ones again."""
        digest = hashlib.sha256(f"ssltutor-augment/{seed}/{self.rank}/{epoch}".encode()).digest()
        return torch.Generator(device=self.device).manual_seed(int.from_bytes(digest[:8], "little"))

    def average(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalar metrics averaged over the ranks (one all-reduce), so every rank logs and checks the same loss."""
        keys = list(metrics)
        stacked = torch.stack([metrics[k].detach().float().reshape(()).to(self.device) for k in keys])
        dist.all_reduce(stacked)
        return dict(zip(keys, stacked / self.world_size))

    @torch.no_grad()
    def average_batchnorm_statistics(self, module: nn.Module) -> None:
        """Average BatchNorm running means/variances over the ranks (each saw its own shard unless SyncBatchNorm),
        so evaluation and the checkpoint use one estimate from all the data."""
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
                for buffer in (layer.running_mean, layer.running_var):
                    dist.all_reduce(buffer)
                    buffer.div_(self.world_size)

    def check_same_on_all_ranks(self, value: int, what: str) -> None:
        """Raise on every rank when the ranks disagree about ``value`` (they would wait on each other forever)."""
        values = torch.tensor([value], device=self.device)
        low, high = values.clone(), values.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if low.item() != high.item():
            raise DistributedError(f"the ranks disagree on the {what}: values from {low.item()} to {high.item()}")

    def barrier(self) -> None:
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


def _environment_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer; {LAUNCH_HINT}") from None


def _check_batch(batch_size: int, world: int, drop_last: bool) -> None:
    if batch_size % world:
        below, above = batch_size // world * world, -(-batch_size // world) * world
        raise DistributedError(
            f"batch_size {batch_size} is not divisible by the world size {world}: batch_size is the global batch, "
            f"split evenly over the ranks; use a multiple of {world} (e.g. {below or above} or {above})")
    if not drop_last:
        raise DistributedError("distributed training needs drop_last=True: every rank takes an equal shard of every "
                               "batch, and a short last batch would not split evenly")


def _resolve_device(device: torch.device | str | None, local_rank: int) -> torch.device:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device in (None, "auto") else torch.device(device)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(f"LOCAL_RANK {local_rank} has no GPU: this node has {count}; start at most {count} "
                                   "processes per node (torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if device.type != "cpu":
        raise DistributedError(f"distributed training runs on CUDA (nccl) or CPU (gloo), not on {device.type}: "
                               "pass device='cuda' or device='cpu'")
    return device


def _check_backend(backend: str, device: torch.device) -> None:
    available = [b for b in BACKENDS if dist.is_backend_available(b)]
    if backend not in available:
        raise DistributedError(f"backend {backend!r} is not available in this PyTorch build (available: "
                               f"{', '.join(available) or 'none'}): use one of those, e.g. 'gloo' on CPU")
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError("backend 'nccl' runs only on CUDA devices: use backend='gloo' on CPU")


def init_distributed(device: torch.device | str | None = None, backend: str | None = None,
                     batch_size: int | None = None, drop_last: bool = True,
                     timeout: timedelta = timedelta(minutes=10)) -> DistributedContext:
    """Join (or reuse) the process group that ``torchrun`` describes in the environment.

    device: None/"auto" -> ``cuda:<LOCAL_RANK>`` when CUDA is present, else CPU; "cuda" -> ``cuda:<LOCAL_RANK>``.
    backend: None -> "nccl" on CUDA, "gloo" on CPU. batch_size: the global batch, checked against the world size.
    Raises :class:`DistributedError` before any communication when the launch cannot work.
    """
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed: install a standard PyTorch wheel")
    if dist.is_initialized():  # the script (or an earlier fit) already joined: reuse that group
        rank_, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank_))
        if batch_size is not None:
            _check_batch(batch_size, world, drop_last)
        device = _resolve_device(device, local_rank)
        return DistributedContext(rank_, world, local_rank, device, dist.get_backend())
    missing = [name for name in RENDEZVOUS_VARIABLES if not os.environ.get(name)]
    if missing:
        raise DistributedError(f"distributed training needs the rendezvous variables {', '.join(missing)}, which "
                               f"are not set: {LAUNCH_HINT}, or set {', '.join(RENDEZVOUS_VARIABLES)} yourself")
    rank_, world = _environment_int("RANK"), _environment_int("WORLD_SIZE")
    local_rank = _environment_int("LOCAL_RANK") if os.environ.get("LOCAL_RANK") else rank_
    if world < 1 or not 0 <= rank_ < world:
        raise DistributedError(f"RANK={rank_} WORLD_SIZE={world}: need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE")
    if batch_size is not None:
        _check_batch(batch_size, world, drop_last)
    device = _resolve_device(device, local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    _check_backend(backend, device)
    dist.init_process_group(backend, init_method="env://", rank=rank_, world_size=world, timeout=timeout)
    atexit.register(_shutdown)
    return DistributedContext(rank_, world, local_rank, device, backend)


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch_context(distributed: bool | None, device: torch.device | str | None, batch_size: int,
                   drop_last: bool = True) -> DistributedContext | None:
    """What ``fit`` calls: ``None`` for a single process, else the joined :class:`DistributedContext`.

    distributed: None -> distributed when launched by torchrun with WORLD_SIZE > 1 (or inside an initialised group
    of several ranks); True -> always (errors name what is missing); False -> never.
    """
    grouped = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed is None:
        launched = bool(os.environ.get("RANK")) and os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")
        distributed = grouped or launched
    if not distributed:
        if grouped:
            raise DistributedError(f"a process group of {dist.get_world_size()} ranks is initialised but "
                                   "distributed=False: the losses would still gather across ranks; pass "
                                   "distributed=True (or None), or destroy the group first")
        return None
    return init_distributed(device, batch_size=batch_size, drop_last=drop_last)
