"""Distill-on-the-Go (DoGo): two self-supervised models trained side by side, each distilling the other's
similarity distribution (Bhat, Arani & Zonooz, CVPR Workshops 2021, arXiv 2104.09866).

Small networks gain less from self-supervised pre-training than wide ones. DoGo trains a small model and a larger
peer *together, from scratch*, in one stage. Each model k keeps its own SSL objective and sees its own two views of
every image (4 views per image in all). From the L2-normalised outputs Z'_k, Z''_k of its two views it builds a
B x B similarity distribution::

    P_k[i, j] = softmax_j( cos(Z'_k[i], Z''_k[j]) / tau ),   tau = 0.1            (row i: view-1 anchor i)

and each model is pulled towards the peer's (detached) distribution, deep-mutual-learning style::

    L_1 = L_ssl(model 1) + lambda1 * KL(P_2 || P_1)        L_2 = L_ssl(model 2) + lambda2 * KL(P_1 || P_2)

Each model is a base method of :mod:`ssltutor.methods.ssl` (:func:`dogo_model`: SimCLR or SimSiam with DoGo's
settings), so L_ssl is that method's own loss; DoGo computes only the KL terms, from the projections (SimCLR) or
predictions (SimSiam) the two methods' ``step`` return (:func:`distilled_outputs`).

One optimizer, two objectives. The released code steps two Adam optimizers, one per model. Here the fit loop
minimises ``L_1 + L_2`` with one optimizer over both parameter sets. The sets are disjoint and each KL target is
detached, so d(L_1 + L_2)/d(theta_1) = dL_1/d(theta_1) and d(L_1 + L_2)/d(theta_2) = dL_2/d(theta_2). Adam, SGD
and LARS update every parameter from its own gradient and state, so one optimizer over both models takes the same
steps as two optimizers with the same hyper-parameters (tests/test_dogo.py checks both facts). The exception is a
clipped *global* gradient norm (``fit(grad_clip=...)``), which would couple the two models.

Choices (the values of DoGo's code):

* ``kl_reduction="batchmean"`` (the KL summed over a row, averaged over rows) with ``lambda1 = 100/256`` and
  ``lambda2 = 1/256``. The code calls ``F.kl_div`` with PyTorch 1.4's default ``reduction="mean"``, which also
  divides by B, so its weights ``[100, 1]`` mean 100/B and 1/B per row and change with the batch size. Our defaults
  are the code's per-row weights at its batch size 256, now batch-size free. The asymmetry matters. With symmetric
  weights (we tried lambda1 = lambda2 = 1 and 0.4) both models agree on the trivial answer: within two epochs P_1
  and P_2 become uniform, the KL goes to 0 and both SimCLR losses sit at log(2B - 1), i.e. collapse. With
  lambda2 ~ 0 the peer learns as it would alone and the small model follows a meaningful target. The paper calls
  the scheme "mutual"; the code makes it nearly one-way. ``kl_reduction="mean", lambda1=100, lambda2=1``
  reproduces the code exactly (the ``paper`` preset).
* SimCLR: NT-Xent with cosine similarity and tau = 0.5 (the code hard-codes 0.5), and DoGo's head
  Linear(D, 512, no bias)-BN-ReLU-Linear(512, 128). SimSiam: the 3-layer 2048 projector and the 512 bottleneck
  predictor. ``head_scale`` shrinks every width for CPU runs.
* What is distilled: each model's distilled outputs are its SimCLR projections or its SimSiam predictions. When
  *both* models use SimSiam, the peer's target is its projector output instead, as in the code's ``train_util.py``.
* Views: SimCLR views at strength 1 (0.8/0.8/0.8/0.2), SimSiam views at strength 0.5 (the code's SimSiam transform
  has an extra grayscale, not reproduced). Blur is used only above 64 px, as in the code.
"""
from __future__ import annotations

import copy
import re

import torch
from torch import Tensor, nn

from .. import losses
from ..data import augment
from ..models import Backbone, create_backbone, mlp
from .base import Batch, Method, Wrapper
from .ssl import SimCLR, SimSiam

OBJECTIVES = ("simclr", "simsiam")
KL_REDUCTIONS = ("batchmean", "mean")
_CONVNET = re.compile(r"(small_convnet|fast_convnet|res_convnet)(\d*)$")


def backbone_from_name(name: str, cifar_stem: bool = True) -> Backbone:
    """Build a backbone from one name that also carries the width: ``"small_convnet16"`` is the small convnet of
    width 16 (``"small_convnet"`` alone: width 32; the same for ``fast_convnet`` and ``res_convnet``); ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` are the ResNets
    (CIFAR stem by default, padding 1 as in DoGo's code)."""
    if not isinstance(name, str):
        raise ValueError(f"a model name must be a string like 'small_convnet16' or 'resnet18', got {name!r}")
    match = _CONVNET.fullmatch(name)
    if match:
        width = int(match.group(2) or 32)
        if width < 1:
            raise ValueError(f"{match.group(1)} width must be >= 1, got {name!r}")
        return create_backbone(match.group(1), width=width)
    if name in ("resnet18", "resnet34", "resnet50"):
        return create_backbone(name, cifar_stem=cifar_stem)
    raise ValueError(f"unknown model name {name!r}: use 'small_convnet<width>' (e.g. 'small_convnet16', "
                     "also fast_convnet<width> / res_convnet<width>), "
                     "'resnet18', 'resnet34' or 'resnet50'")


def default_peer(backbone: Backbone) -> Backbone:
    """The larger peer when none is given: a small convnet of twice the width, or a ResNet-50 for a smaller ResNet
    (the paper's ResNet-18 / ResNet-50 pair)."""
    name = getattr(backbone, "name", "")
    match = _CONVNET.fullmatch(name)
    if match:
        return backbone_from_name(f"{match.group(1)}{2 * int(match.group(2) or 32)}")
    if name.startswith(("resnet18", "resnet34")):
        return create_backbone("resnet50", cifar_stem=name.endswith("_cifar"))
    raise ValueError(f"no default peer for backbone {name!r}: pass peer= (a Backbone or a name like 'resnet50')")


def _scaled(width: int, scale: float) -> int:
    return max(8, int(width * scale))


def dogo_projector(feature_dim: int, scale: float = 1.0) -> nn.Sequential:
    """DoGo's SimCLR head (``models/simclr.py``): Linear(D, 512, no bias) - BN - ReLU - Linear(512, 128), both widths
    times ``scale`` (at least 8)."""
    if scale <= 0:
        raise ValueError(f"head_scale must be > 0, got {scale}")
    return mlp([feature_dim, _scaled(512, scale), _scaled(128, scale)], batch_norm=True)


def dogo_model(objective: str, backbone: Backbone, head_scale: float = 1.0, temperature: float = 0.5,
               image_size: int = 32, stats=augment.IMAGENET_STATS,
               crop_scale: tuple[float, float] = (0.08, 1.0)) -> SimCLR | SimSiam:
    """One model of a DoGo pair: a base method of :mod:`ssltutor.methods.ssl` with DoGo's settings, which computes
    that model's SSL loss itself.

    objective: ``"simclr"``: :class:`SimCLR` (NT-Xent, cosine, ``temperature``; Chen et al. 2020, arXiv 2002.05709)
    with DoGo's head :func:`dogo_projector`; ``"simsiam"``: :class:`SimSiam` (negative cosine with stop-gradient;
    Chen & He 2021, arXiv 2011.10566) with its own projector and predictor. Each uses its recipe's two views
    (SimCLR strength 1, SimSiam strength 0.5), crops of ``crop_scale`` of the image area.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if head_scale <= 0:
        raise ValueError(f"head_scale must be > 0, got {head_scale}")
    common = dict(image_size=image_size, stats=stats, crop_scale=tuple(crop_scale))
    if objective == "simclr":
        return SimCLR(backbone, temperature=temperature, projector=dogo_projector(backbone.feature_dim, head_scale),
                      **common)
    return SimSiam(backbone, head_scale=head_scale, **common)


def distilled_outputs(out: dict) -> tuple[Tensor, Tensor]:
    """The (B, D) pair a model distils, from its ``step`` output: its predictions ``p`` if it has a predictor
    (SimSiam), else its projections ``z`` (SimCLR)."""
    return tuple(out["p"] if "p" in out else out["z"])


def _check_options(kl_reduction: str, kd_temperature: float, lambdas: dict[str, float]) -> None:
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"kl_reduction must be one of {', '.join(KL_REDUCTIONS)}, got {kl_reduction!r} "
                         "('mean' divides by B*B as the released code does)")
    if kd_temperature <= 0:
        raise ValueError(f"kd_temperature must be > 0, got {kd_temperature}")
    for name, value in lambdas.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _as_in_training(method: DoGo | DoGoBaseline, images: Tensor, generator: torch.Generator | None,
                    names: tuple[str, ...]) -> dict[str, Tensor]:
    """{name: P} of each wrapped model, computed from its own step on the uint8 ``images`` by a throw-away copy of
    ``method`` in train mode: BatchNorm normalises with the batch's own statistics, as in the loss, and the
    method's running statistics stay untouched. (In eval mode a freshly initialised network maps every image to
    nearly the same projection, so P would look uniform.)"""
    twin = copy.deepcopy(method).train()
    batch = Batch(images, torch.zeros(len(images), dtype=torch.long, device=images.device), generator)
    return {name: losses.similarity_distribution(*distilled_outputs(m.step(batch)), method.kd_temperature)
            for name, m in zip(names, twin.wrapped())}


class DoGo(Wrapper):
    """Two models, one step: model 1 (``backbone``, the small one, what evaluation uses) and model 2 (``peer``),
    each a base SSL method (:func:`dogo_model`) in ``models``; DoGo adds the two KL terms to their own losses.

    Args:
        backbone: model 1, a Backbone. peer: model 2, a Backbone or a name (``"small_convnet64"``, ``"resnet50"``);
            ``None`` picks :func:`default_peer` (twice as wide, or ResNet-50).
        objective, peer_objective: "simclr" (default) or "simsiam" for model 1 and model 2 (peer default: same).
        lambda1, lambda2: KL weights of model 1 and model 2, >= 0 (defaults 100/256 and 1/256: the code's per-row
            weights at batch 256, see the module docstring; 0 switches that direction off).
        kl_reduction: "batchmean" (per-row KL averaged over rows) or "mean" (also divided by B, the code).
        kd_temperature: tau of the similarity distributions (0.1). temperature: NT-Xent tau (0.5).
        head_scale: width factor of the heads. image_size, stats: the view pipelines' size and normalisation.
        crop_scale: RandomResizedCrop's area range (the code: 0.08-1; the cpu preset: 0.2-1, faster on short runs).

    ``step`` runs model 1's step, then model 2's (each draws its own two views from the batch's generator) and
    returns loss (L_1 + L_2), loss1, loss2, ssl1, ssl2 (the models' own losses), kl1, kl2. The parts keep their
    graph, so ``torch.autograd.grad(out["loss1"], ...)`` works; the fit loop logs them detached. ``views`` shows
    the four views (model 1's two, then model 2's) as one ``MultiView``.
    """

    def __init__(self, backbone: Backbone, peer: Backbone | str | None = None, objective: str = "simclr",
                 peer_objective: str | None = None, lambda1: float = 100 / 256, lambda2: float = 1 / 256,
                 kl_reduction: str = "batchmean", kd_temperature: float = 0.1, temperature: float = 0.5,
                 head_scale: float = 1.0, image_size: int = 32, stats=augment.IMAGENET_STATS,
                 crop_scale: tuple[float, float] = (0.08, 1.0)):
        super().__init__()
        _check_options(kl_reduction, kd_temperature, {"lambda1": lambda1, "lambda2": lambda2})
        if isinstance(peer, str):
            peer = backbone_from_name(peer)
        elif peer is None:
            peer = default_peer(backbone)
        elif not isinstance(peer, Backbone):
            raise ValueError(f"peer must be a Backbone, a model name or None, got {type(peer).__name__}")
        if peer is backbone:
            raise ValueError("peer must be a different network from backbone (two models with their own weights)")
        peer_objective = objective if peer_objective is None else peer_objective
        common = dict(head_scale=head_scale, temperature=temperature, image_size=image_size, stats=stats,
                      crop_scale=crop_scale)
        # Model 1 first: its head is drawn from the global RNG before the peer's (studies.dogo relies on it).
        self.models = nn.ModuleList([dogo_model(objective, backbone, **common),
                                     dogo_model(peer_objective, peer, **common)])
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.kl_reduction, self.kd_temperature = kl_reduction, kd_temperature

    def wrapped(self) -> list[Method]:
        return list(self.models)

    @property
    def peer(self) -> Backbone:
        return self.models[1].backbone

    @property
    def backbones(self) -> tuple[Backbone, Backbone]:
        """(model 1, model 2)."""
        return self.backbone, self.peer

    @property
    def views(self) -> augment.MultiView:
        """Each model's two views, model 1's first: the four views a step draws, in that order."""
        return augment.MultiView([v for m in self.models for v in m.views.views])

    def distillation(self, out1: dict, out2: dict) -> tuple[Tensor, Tensor]:
        """(KL(P_2 || P_1), KL(P_1 || P_2)) from the two models' step outputs, each with the peer's distribution
        detached (:func:`ssltutor.losses.dogo_kl`). When both models are SimSiam, the peer's target is its
        projector output instead of its predictions, as in the code's ``train_util.py``."""
        both_simsiam = all(isinstance(m, SimSiam) for m in self.models)
        student1, student2 = distilled_outputs(out1), distilled_outputs(out2)
        target1 = out2["z"] if both_simsiam else student2
        target2 = out1["z"] if both_simsiam else student1
        kl1 = losses.dogo_kl(*student1, *target1, self.kd_temperature, self.kl_reduction)
        kl2 = losses.dogo_kl(*student2, *target2, self.kd_temperature, self.kl_reduction)
        return kl1, kl2

    def step(self, batch: Batch) -> dict[str, Tensor]:
        out1, out2 = (m.step(batch) for m in self.models)
        kl1, kl2 = self.distillation(out1, out2)
        loss1 = out1["loss"] + self.lambda1 * kl1
        loss2 = out2["loss"] + self.lambda2 * kl2
        return {"loss": loss1 + loss2, "loss1": loss1, "loss2": loss2, "ssl1": out1["loss"], "ssl2": out2["loss"],
                "kl1": kl1, "kl2": kl2}

    @torch.no_grad()
    def similarity_distributions(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """P_1 and P_2 (each (B, B), rows sum to 1) of a uint8 batch, as the loss sees them (see
        :func:`_as_in_training`)."""
        return _as_in_training(self, images, generator, ("model 1", "model 2"))


class DoGoBaseline(Wrapper):
    """One model of the pair trained alone, the paper's baseline: the same base method (:func:`dogo_model`: objective,
    head, temperature and views as in :class:`DoGo`) in ``base``, without peer or KL. With ``objective="simclr"``
    this is plain SimCLR with DoGo's head. ``step`` returns loss and ssl1 (the same: the base method's loss).
    ``kd_temperature`` is used only by :meth:`similarity_distributions`."""

    def __init__(self, backbone: Backbone, objective: str = "simclr", temperature: float = 0.5,
                 head_scale: float = 1.0, kd_temperature: float = 0.1, image_size: int = 32,
                 stats=augment.IMAGENET_STATS, crop_scale: tuple[float, float] = (0.08, 1.0)):
        super().__init__()
        if kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be > 0, got {kd_temperature}")
        self.base = dogo_model(objective, backbone, head_scale, temperature, image_size, stats, crop_scale)
        self.kd_temperature = kd_temperature

    def step(self, batch: Batch) -> dict[str, Tensor]:
        loss = self.base.step(batch)["loss"]
        return {"loss": loss, "ssl1": loss}

    @torch.no_grad()
    def similarity_distributions(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """{"model": P} (B, B) of a uint8 batch, as the loss sees it (see :func:`_as_in_training`)."""
        return _as_in_training(self, images, generator, ("model",))


__all__ = ["DoGo", "DoGoBaseline", "OBJECTIVES", "KL_REDUCTIONS", "backbone_from_name", "default_peer",
           "dogo_model", "dogo_projector", "distilled_outputs"]
