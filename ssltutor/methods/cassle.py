"""CaSSLe: self-supervised models are continual learners (Fini et al., CVPR 2022, arXiv 2112.04215).

A wrapper that makes any of the SSL methods of :mod:`ssltutor.methods.ssl` continual. At the start of every task
after the first (:meth:`CaSSLe.start_task`), a frozen copy of the backbone and projector is kept and a new predictor
``g`` (Linear-BN-ReLU-Linear, hidden 2048) is created. On every batch both views go through the frozen network too,
and the predictor has to map the *current* projections to the *past* ones with the method's own loss::

    L = L_ssl(z_A, z_B) + lambda * D,        D = 1/2 [ D(g(z_A), zbar_A) + D(g(z_B), zbar_B) ]

(the contrastive distiller of SimCLR / MoCo v2+ scores both views at once, symmetrised over the two directions).
The distillation losses live in :mod:`ssltutor.losses` (the defaults of CaSSLe's code):

=================  =====================  ==========================================================  ======
SSL method         distiller              D(p, zbar)                                                  lambda
=================  =====================  ==========================================================  ======
SimCLR, MoCo v2+   ``contrastive``        InfoNCE of p against all 2B frozen projections, tau 0.2     1
BYOL (SimSiam*)    ``predictive``         2 - 2 cos(p, zbar)                                          1
Barlow Twins       ``decorrelative``      Barlow loss on (p, zbar), lambda_offdiag 5e-3, scale 0.1    1
VICReg             ``predictive_mse``     MSE(p, zbar), VICReg's invariance term                      25
SwAV               ``knowledge``          CE(softmax(Pbar(zbar)/T), log softmax(P_d(p)/T)), T 0.1     1
=================  =====================  ==========================================================  ======

(*SimSiam is not in the paper; we give it BYOL's distiller, its own loss up to an affine map.)

How the wrapper sees ``z_A, z_B``: the base method's ``step`` returns the augmented views it trained on
(``views``) and their projections (``z``, still in the graph), as every method of :mod:`ssltutor.methods.ssl`
does; the base loss is computed by the base method itself, untouched, and the frozen copy sees the same views.

Frozen batch norm: the released code never puts the frozen copy in eval mode, so Lightning's ``model.train()`` keeps
its BatchNorm layers on batch statistics, and their running statistics keep moving towards the new task.
``frozen_bn_train=True`` reproduces that; the default ``False`` keeps the frozen copy in eval mode, because then the
target really is the network as it was at the end of the previous task (running statistics of its own data), it
does not depend on which images share the batch, and it never changes while the task trains.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..data import augment
from ..models import Backbone, head
from .base import Batch, Wrapper, check_options, frozen_copy
from .ssl import SSL_CLASSES, BYOL, VICReg, BarlowTwins, MoCoV2Plus, SimCLR, SimSiam, SSLMethod, SwAV

DISTILLERS = ("contrastive", "predictive", "decorrelative", "predictive_mse", "knowledge")

# Which distiller each SSL method re-uses (cassle/distillers/, CaSSLe, arXiv 2112.04215).
DISTILLER_OF = {SimCLR: "contrastive", MoCoV2Plus: "contrastive", BYOL: "predictive", SimSiam: "predictive",
                BarlowTwins: "decorrelative", VICReg: "predictive_mse", SwAV: "knowledge"}

# distill_lamb defaults of the released code: 25 for VICReg's MSE, 1 elsewhere.
DEFAULT_LAMBDA = {"contrastive": 1.0, "predictive": 1.0, "decorrelative": 1.0, "predictive_mse": 25.0, "knowledge": 1.0}

# distill_temperature defaults: 0.2 (contrastive), 0.1 (knowledge); the other distillers have none.
DEFAULT_TEMPERATURE = {"contrastive": 0.2, "knowledge": 0.1}


def distiller_for(base: SSLMethod) -> str:
    """The distiller CaSSLe pairs with ``base`` (a ValueError names the supported methods otherwise)."""
    for cls, name in DISTILLER_OF.items():
        if isinstance(base, cls):
            return name
    supported = ", ".join(sorted(c.__name__ for c in DISTILLER_OF))
    raise ValueError(f"CaSSLe has no distiller for {type(base).__name__}: wrap one of {supported}")


class CaSSLe(Wrapper):
    """Continual wrapper around an SSL method (Fini et al., 2022).

    Args:
        base: the SSL method to make continual (SimCLR, BYOL, MoCoV2Plus, BarlowTwins, VICReg, SwAV; SimSiam as an
            extension), or a :class:`Backbone`, in which case ``ssl_method`` is built on it with ``ssl_options``,
            ``image_size``, ``stats`` and ``head_scale`` (the form ``methods.create("cassle", ...)`` uses).
        distiller: one of :data:`DISTILLERS`; default: the one the paper pairs with the base method.
        distill_lambda: weight of the distillation loss; default 25 for ``predictive_mse``, 1 otherwise (code).
        distill_temperature: tau of the contrastive (0.2) and knowledge (0.1) distillers.
        pred_hidden: hidden width of the predictor g (paper 2048; default 2048 * ``head_scale``, so pass the
            ``head_scale`` the base was built with when you wrap a ready method).
        frozen_bn_train: keep the frozen copy's BatchNorm in train mode as the released code does (see module doc).
        reset_predictor: a new, randomly initialised g (and SwAV distillation prototypes) at every task, as the
            issue and the paper describe. The released code builds g fresh for task 1 (0-based) but then loads it
            with the previous task's checkpoint (``strict=False``), so from task 2 on it carries over: ``False``.
        seed: seeds the initialisation of g (``seed * 1000 + task``), so a resumed run builds the same g.
    """

    def __init__(self, base: SSLMethod | Backbone, ssl_method: str = "simclr", ssl_options: dict | None = None,
                 image_size: int = 32, stats=augment.IMAGENET_STATS, head_scale: float = 1.0,
                 distiller: str | None = None, distill_lambda: float | None = None,
                 distill_temperature: float | None = None, pred_hidden: int | None = None,
                 frozen_bn_train: bool = False, reset_predictor: bool = True, seed: int = 0):
        super().__init__()  # Wrapper: backbone, views and memory_format belong to the base method
        if isinstance(base, Backbone):
            if ssl_method not in SSL_CLASSES:
                raise ValueError(f"unknown ssl_method {ssl_method!r}: choose one of {', '.join(SSL_CLASSES)}")
            options = dict(image_size=image_size, stats=stats, head_scale=head_scale, **(ssl_options or {}))
            check_options(ssl_method, SSL_CLASSES[ssl_method], options)
            base = SSL_CLASSES[ssl_method](base, **options)
        if not isinstance(base, SSLMethod):
            distiller_for(base)  # raises: names the methods CaSSLe can wrap
        self.base = base
        self.distiller = distiller or distiller_for(base)
        if self.distiller not in DISTILLERS:
            raise ValueError(f"distiller must be one of {', '.join(DISTILLERS)}, got {self.distiller!r}")
        if self.distiller == "knowledge" and not isinstance(base, SwAV):
            raise ValueError("the knowledge distiller needs SwAV's prototypes: use it with a SwAV base")
        self.distill_lambda = DEFAULT_LAMBDA[self.distiller] if distill_lambda is None else float(distill_lambda)
        if self.distill_lambda < 0:
            raise ValueError(f"distill_lambda must be >= 0, got {distill_lambda}")
        self.distill_temperature = distill_temperature or DEFAULT_TEMPERATURE.get(self.distiller)
        self.pred_hidden = pred_hidden or max(8, int(2048 * head_scale))
        self.frozen_bn_train, self.reset_predictor, self.seed = frozen_bn_train, reset_predictor, seed
        self.exclude_bias_norm = base.exclude_bias_norm
        # Filled by start_task(t > 0); None during the first task (plain SSL).
        self.frozen_backbone: nn.Module | None = None
        self.frozen_projector: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self.distill_prototypes: nn.Linear | None = None
        self.register_buffer("frozen_prototypes", None)
        self.register_buffer("task", torch.zeros((), dtype=torch.long))

    # --- the base method's surface (backbone, views, memory format, hooks) comes from Wrapper -----------------
    @property
    def projector(self) -> nn.Module:
        return self.base.projector

    @property
    def distilling(self) -> bool:
        """True from the second task on (a frozen past network exists)."""
        return self.frozen_backbone is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone is not None and not self.frozen_bn_train:
            self.frozen_backbone.eval()
            self.frozen_projector.eval()
        return self

    # --- tasks --------------------------------------------------------------------------------------------
    def start_task(self, task: int) -> None:
        """Call before training task ``task`` (0-based). From task 1 on: freeze a copy of backbone + projector (and
        SwAV's prototypes) and build the predictor g (new unless ``reset_predictor=False`` and one exists)."""
        if task < 0:
            raise ValueError(f"task must be >= 0, got {task}")
        self.task.fill_(task)
        if task == 0:
            self.frozen_backbone = self.frozen_projector = self.predictor = self.distill_prototypes = None
            self.frozen_prototypes = None
            return
        device = next(self.base.parameters()).device
        self.frozen_backbone = frozen_copy(self.base.backbone)
        self.frozen_projector = frozen_copy(self.base.projector)
        if self.predictor is None or self.reset_predictor:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1000 + task)
                self.predictor = head("cassle_predictor", self.base.embed_dim, hidden=self.pred_hidden).to(device)
                if self.distiller == "knowledge":  # new learnable prototypes, normed like the base's
                    self.distill_prototypes = self.base.new_prototypes(self.base.prototypes.out_features)
        if self.distiller == "knowledge":
            self.frozen_prototypes = self.base.prototypes.weight.detach().clone()
        self.train(self.training)

    # --- the loss -----------------------------------------------------------------------------------------
    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.distilling:
            return self.base.step(batch)
        out = self.base.step(batch)
        views, z = out.get("views", []), out.get("z", [])
        if len(views) != 2 or len(z) != 2:
            raise RuntimeError(
                f"CaSSLe distils two views, the backbone and projector run once per view: "
                f"{type(self.base).__name__}.step returned {len(views)} views and {len(z)} projections "
                f"(multi-crop is not supported)")
        with torch.no_grad():
            z_frozen = [self.frozen_projector(self.frozen_backbone(v)) for v in views]
        if isinstance(self.base, MoCoV2Plus):  # the code distils MoCo's L2-normalised queries
            z = [F.normalize(zi, dim=1) for zi in z]
        distill = self.distill_loss([self.predictor(zi) for zi in z], z_frozen)
        ssl_loss = out["loss"]
        return {**out, "loss": ssl_loss + self.distill_lambda * distill, "ssl_loss": ssl_loss.detach(),
                "distill_loss": distill.detach()}

    def distill_loss(self, p: list[torch.Tensor], z_frozen: list[torch.Tensor]) -> torch.Tensor:
        """D for the two views: p = [g(z_A), g(z_B)], z_frozen = [zbar_A, zbar_B], each (B, D)."""
        if self.distiller == "contrastive":  # both views at once, both directions (inside the loss)
            return losses.contrastive_distillation(torch.cat(p), torch.cat(z_frozen), self.distill_temperature)
        per_view = [self._distill_one(pi, zi) for pi, zi in zip(p, z_frozen)]
        return (per_view[0] + per_view[1]) / 2

    def _distill_one(self, p: torch.Tensor, z_frozen: torch.Tensor) -> torch.Tensor:
        if self.distiller == "predictive":
            return losses.predictive_distillation(p, z_frozen)
        if self.distiller == "decorrelative":
            return losses.decorrelative_distillation(p, z_frozen, self.base.lambda_offdiag, self.base.scale)
        if self.distiller == "predictive_mse":
            return losses.predictive_mse(p, z_frozen)
        # knowledge (SwAV): frozen prototypes score the frozen projection; new learnable prototypes score g(z).
        # Both sets follow the base's prototype_norm: unit rows, or weight-normed rows of learnable length (the
        # code's weight_norm, which the CaSSLe paper preset uses).
        student = self.base.scores(p, self.distill_prototypes.weight)
        with torch.no_grad():
            target = self.base.scores(z_frozen, self.frozen_prototypes)
        return losses.knowledge_distillation(student, target, self.distill_temperature)
