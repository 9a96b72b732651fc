"""The small surface every method shares.

A method owns its networks and its view pipeline. The fit loop hands it a :class:`Batch` of uint8 images that
already live on the device; ``step`` augments them, runs the networks and returns a dict with ``loss`` and named
scalar metrics; a method with views and projections (the SSL objectives) also returns ``views`` (the list of
augmented views it trained on), ``feats`` and ``z`` (their pooled backbone features and projections, in the graph)
and, with a predictor (BYOL, SimSiam), ``p`` (the predictions): what the methods that wrap another (CaSSLe, DoGo,
FKT, the rotation auxiliary) build on, so no objective is computed twice. The fit loop logs the scalar tensors only.
``on_step_end`` updates momentum encoders and queues; ``backbone`` is what evaluation uses.
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..data import augment
from ..models import Backbone, extract_features


@dataclass
class Batch:
    """images: (B, 3, H, W) uint8 on the device; labels: (B,) int64; generator: the run's torch.Generator, on
    the same device, from which every random augmentation parameter is drawn."""

    images: torch.Tensor
    labels: torch.Tensor
    generator: torch.Generator | None = None


class Method(nn.Module):
    """Base class. Subclasses set ``self.views`` (a callable ``(uint8 images, generator) -> list of views``) and
    implement :meth:`step`.

    ``exclude_bias_norm``: biases and normalisation parameters get no weight decay (and no LARS adaptation),
    as in SimCLR/BYOL/solo-learn. ``fit(..., exclude_bias_norm=False)`` decays and scales everything for one run,
    where the paper's code does (CaSSLe's SwAV script, the three FKT scripts).
    """

    exclude_bias_norm = True

    def __init__(self, backbone: Backbone, image_size: int = 32, stats=augment.IMAGENET_STATS):
        super().__init__()
        self.backbone = backbone
        self.memory_format = torch.contiguous_format
        self.views = None
        self.image_size, self.stats = image_size, stats
        # Evaluation must see inputs normalised like training: BN running statistics depend on it.
        self.eval_transform = augment.eval_transform(image_size, *stats)

    # --- what the fit loop calls -------------------------------------------------------------------------
    def step(self, batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``step``: what DistributedDataParallel calls, so it can average the gradients of the step over ranks."""
        return self.step(batch)

    def on_step_end(self, progress: float) -> None:
        """Called after each optimizer step; ``progress`` = finished steps / total steps, in (0, 1]."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based)."""

    def parameter_groups(self, weight_decay: float, exclude_bias_norm: bool | None = None) -> list[dict]:
        """Trainable parameters split into decayed and non-decayed (bias, norm) groups; ``exclude_bias_norm``
        (None: the class's :attr:`exclude_bias_norm`) False puts every parameter in the decayed group.

        A submodule named in :attr:`lr_scales` by its path (e.g. ``{"predictor": 10.0}``, or ``base.predictor``
        in a :class:`Wrapper`) gets groups of its own whose ``lr_scale`` multiplies the scheduled learning rate (the
        fit loop reads it)."""
        exclude = self.exclude_bias_norm if exclude_bias_norm is None else exclude_bias_norm
        scales = getattr(self, "lr_scales", {})
        buckets: dict[tuple[float, bool], list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            scale = next((v for k, v in scales.items() if name == k or name.startswith(k + ".")), 1.0)
            key = (float(scale), bool(exclude and p.ndim <= 1))
            buckets.setdefault(key, []).append(p)
        groups = []
        for scale in dict.fromkeys(k[0] for k in [(1.0, False), *buckets]):
            extra = {} if scale == 1.0 else {"lr_scale": scale}
            if scale == 1.0 or buckets.get((scale, False)):  # the default decayed group is always there
                groups.append({"params": buckets.get((scale, False), []), "weight_decay": weight_decay, **extra})
            if buckets.get((scale, True)):
                groups.append({"params": buckets[(scale, True)], "weight_decay": 0.0, "lars_exclude": True,
                               **extra})
        return groups

    def use_channels_last(self) -> "Method":
        """Weights and augmented views in the channels_last layout (the fit loop's and the timers' option)."""
        self.to(memory_format=torch.channels_last)
        self.memory_format = torch.channels_last
        return self

    # --- helpers for subclasses ---------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(N, 3, H, W) uint8 images -> (N, D) backbone features, eval mode, with this method's eval transform."""
        return extract_features(self.backbone, images, transform=self.eval_transform, batch_size=batch_size)

    def make_views(self, batch: Batch) -> list[torch.Tensor]:
        """Augmented float views of the batch, in the memory format the fit loop chose."""
        views = self.views(batch.images, batch.generator)
        return [v.contiguous(memory_format=self.memory_format) for v in views]


class Wrapper(Method):
    """A method built from whole methods (CaSSLe and FKT wrap one, ``self.base``; DoGo a pair): the wrapped
    methods keep their networks, views and objectives, and the wrapper combines what their ``step`` returns.

    The first method of :meth:`wrapped` is the one evaluation uses: its backbone, views, eval transform, image size
    and statistics are the wrapper's. The memory format and the step hooks reach every wrapped method. Subclasses
    call ``Wrapper.__init__`` (not ``Method.__init__``: the backbones belong to the wrapped methods, so each
    parameter has one name in the state dict) and then register the methods they wrap.
    """

    def __init__(self):
        nn.Module.__init__(self)

    def wrapped(self) -> list[Method]:
        """The wrapped methods, the one evaluation uses first (default: ``[self.base]``)."""
        return [self.base]

    @property
    def lr_scales(self) -> dict[str, float]:
        """The learning-rate scales of every wrapped method, keyed by the submodule's path from the wrapper
        (``base.predictor`` for a wrapped BYOL with ``predictor_lr_scale``), so that :meth:`parameter_groups`
        gives the wrapped predictor its own rate as the method alone would."""
        return {f"{path}.{name}": scale for path, m in self.named_modules()
                if isinstance(m, Method) and not isinstance(m, Wrapper)
                for name, scale in getattr(m, "lr_scales", {}).items()}

    @property
    def backbone(self) -> Backbone:
        return self.wrapped()[0].backbone

    @property
    def views(self):
        return self.wrapped()[0].views

    @property
    def eval_transform(self):
        return self.wrapped()[0].eval_transform

    @property
    def image_size(self) -> int:
        return self.wrapped()[0].image_size

    @property
    def stats(self):
        return self.wrapped()[0].stats

    @property
    def memory_format(self) -> torch.memory_format:
        return self.wrapped()[0].memory_format

    @memory_format.setter
    def memory_format(self, value: torch.memory_format) -> None:
        for method in self.wrapped():
            method.memory_format = value

    def on_step_end(self, progress: float) -> None:
        for method in self.wrapped():
            method.on_step_end(progress)

    def on_epoch_start(self, epoch: int) -> None:
        for method in self.wrapped():
            method.on_epoch_start(epoch)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with ``requires_grad=False`` everywhere (momentum targets, CaSSLe's past model)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter; buffers (BN statistics) are copied."""
    t_params, o_params = list(target.parameters()), list(online.parameters())
    torch._foreach_mul_(t_params, tau)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - tau)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


def cosine_momentum(base: float, final: float, progress: float) -> float:
    """BYOL's schedule: tau = final - (final - base) * (cos(pi * progress) + 1) / 2, progress in [0, 1]."""
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def allowed_options(cls: type) -> list[str]:
    """Keyword options a method class accepts (its own and those of its bases), ``backbone`` excluded."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (Method, object):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name not in ("self", "backbone") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                names.append(p.name)
    return names


def check_options(name: str, cls: type, options: dict) -> None:
    """A ValueError that lists the allowed options when ``options`` has a key ``cls`` does not accept."""
    allowed = allowed_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {name!r}: allowed are {', '.join(allowed)}")
