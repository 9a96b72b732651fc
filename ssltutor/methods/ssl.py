"""The seven self-supervised objectives of the engine, one class each, sharing the :class:`Method` surface.

Each class holds a backbone, the paper's heads (scaled by ``head_scale`` for small CPU backbones) and its view
pipeline; ``step`` returns the loss plus diagnostics. Defaults follow the papers' code (mostly the solo-learn/CaSSLe
values, since those are the ones re-used for distillation in CaSSLe).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..data import augment
from ..distributed import gather_with_grad
from ..models import head
from .base import Batch, Method, cosine_momentum, ema_update, frozen_copy


def _embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of L2-normalised embeddings: ~1/sqrt(D) when healthy, ~0 when collapsed."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def _check_projector(projector, feature_dim: int, proj_hidden, proj_out) -> None:
    """A ready projector must read the backbone's features and end in a layer :attr:`SSLMethod.embed_dim` can
    read; the named head's width options cannot resize it."""
    if proj_hidden is not None or proj_out is not None:
        raise ValueError("give either projector= (a ready head) or proj_hidden/proj_out (the named head's widths)")
    layers = list(projector) if isinstance(projector, nn.Sequential) else []
    if not layers or not isinstance(layers[-1], (nn.Linear, nn.BatchNorm1d)):
        raise ValueError(f"projector must be an nn.Sequential ending in Linear or BatchNorm1d, got {projector!r}")
    first = next((layer for layer in layers if isinstance(layer, nn.Linear)), None)
    if first is not None and first.in_features != feature_dim:
        raise ValueError(f"projector reads {first.in_features} features but the backbone gives {feature_dim}: "
                         "build it for backbone.feature_dim")


class SSLMethod(Method):
    """Shared constructor pieces: the views and a projector, by default the head named by ``projector_kind`` in
    :data:`models.HEADS`."""

    projector_kind = "simclr_projector"
    view_recipe = "simclr"

    def __init__(self, backbone, image_size: int = 32, stats=augment.IMAGENET_STATS, head_scale: float = 1.0,
                 proj_hidden: int | None = None, proj_out: int | None = None, views=None,
                 crop_scale: tuple[float, float] = (0.08, 1.0), jitter_strength: float | None = None,
                 view_options: dict | None = None, projector: nn.Sequential | None = None):
        """``crop_scale``: RandomResizedCrop's area range (0.08-1 in the papers; 0.2-1 learns faster on short CPU
        runs at 32 px). ``jitter_strength``: colour-jitter strength s of SimCLR-style views (None: the recipe's).
        ``view_options``: more options of the recipe's builder (``augment.views_for``), e.g. CaSSLe's VICReg views
        ``{"solarize_p": (0.1, 0.1)}``. ``projector``: a ready head that replaces the named one, for papers whose
        head is not the method's own (DoGo's ``dogo_projector``, FKT's ``fkt_projector``): an ``nn.Sequential``
        from the backbone's features to a last Linear or BatchNorm1d (``head_scale`` then sizes only the other
        heads, e.g. SimSiam's predictor; ``proj_hidden``/``proj_out`` do not apply)."""
        super().__init__(backbone, image_size, stats)
        if projector is None:
            projector = head(self.projector_kind, backbone.feature_dim, scale=head_scale, hidden=proj_hidden,
                             out=proj_out)
        else:
            _check_projector(projector, backbone.feature_dim, proj_hidden, proj_out)
        self.projector = projector
        self.crop_scale, self.view_options = tuple(crop_scale), dict(view_options or {})
        if views is None:
            options = {"scale": tuple(crop_scale), **self.view_options}
            if jitter_strength is not None:
                if self.view_recipe == "byol":
                    raise ValueError("jitter_strength applies to SimCLR-style views; BYOL-style views use fixed strengths")
                options["strength"] = jitter_strength
            views = augment.views_for(self.view_recipe, image_size, *stats, **options)
        self.views = views

    @property
    def embed_dim(self) -> int:
        return self.projector[-1].num_features if isinstance(self.projector[-1], nn.BatchNorm1d) else self.projector[-1].out_features

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (pooled features h, projection z)."""
        h = self.backbone(x)
        return h, self.projector(h)


class SimCLR(SSLMethod):
    """SimCLR (Chen et al. 2020, arXiv 2002.05709): NT-Xent between the projections of two views.
    ``temperature`` 0.2 as solo-learn/CaSSLe on CIFAR (SimCLR's CIFAR runs use 0.5); ``normalize=False`` is the
    raw dot product of the FKT code."""

    def __init__(self, backbone, temperature: float = 0.2, normalize: bool = True, **kw):
        super().__init__(backbone, **kw)
        self.temperature, self.normalize = temperature, normalize

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = self.make_views(batch)[:2]
        (h1, z1), (h2, z2) = self.embed(v1), self.embed(v2)
        g1, g2 = gather_with_grad(z1), gather_with_grad(z2)  # the whole (global) batch as negatives
        loss = losses.nt_xent(g1, g2, self.temperature, normalize=self.normalize)
        return {"loss": loss, "z_std": _embedding_std(g1), "views": [v1, v2], "feats": [h1, h2], "z": [z1, z2]}


def _predictor_lr_scales(scale: float) -> dict[str, float]:
    """``{"predictor": scale}`` for :meth:`Method.parameter_groups` (empty at 1: the groups stay as they were)."""
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"predictor_lr_scale must be a number > 0 (1 = the paper's), got {scale!r}")
    return {} if scale == 1 else {"predictor": float(scale)}


class _MomentumMethod(SSLMethod):
    """An online branch (backbone, projector) and an EMA target copy of both; tau follows BYOL's cosine schedule
    from ``base_tau`` to ``final_tau`` over the whole run."""

    def __init__(self, backbone, base_tau: float = 0.99, final_tau: float = 1.0, **kw):
        super().__init__(backbone, **kw)
        self.base_tau, self.final_tau = base_tau, final_tau
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.tau = base_tau

    @torch.no_grad()
    def target_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(x))

    def on_step_end(self, progress: float) -> None:
        # tau is a function of progress alone, so a resumed run uses exactly the same values.
        self.tau = cosine_momentum(self.base_tau, self.final_tau, progress)
        ema_update(self.target_backbone, self.backbone, self.tau)
        ema_update(self.target_projector, self.projector, self.tau)

    def parameter_groups(self, weight_decay: float, exclude_bias_norm: bool | None = None) -> list[dict]:
        return super().parameter_groups(weight_decay, exclude_bias_norm)  # targets have requires_grad=False


class BYOL(_MomentumMethod):
    """BYOL (Grill et al. 2020, arXiv 2006.07733): the online predictor regresses the target projection of the other
    view, L = sum over both directions of 2 - 2 cos(q(z_1), sg(z'_2)); target = EMA, tau 0.99 -> 1 (cosine)."""

    projector_kind = "byol_projector"
    view_recipe = "byol"
    # predictor_lr_scale: the predictor's learning rate as a multiple of the rest's (1: BYOL; > 1 speeds up the
    # start of short runs: Tian et al. 2021, arXiv 2102.06810, study the predictor's relative learning rate)

    def __init__(self, backbone, pred_hidden: int | None = None, predictor_lr_scale: float = 1.0, **kw):
        super().__init__(backbone, **kw)
        scale = kw.get("head_scale", 1.0)
        self.predictor = head("byol_predictor", self.embed_dim, scale=scale, hidden=pred_hidden, out=self.embed_dim)
        self.lr_scales = _predictor_lr_scales(predictor_lr_scale)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = self.make_views(batch)[:2]
        (h1, z1), (h2, z2) = self.embed(v1), self.embed(v2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.target_embed(v1), self.target_embed(v2)
        loss = losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1)
        return {"loss": loss, "z_std": _embedding_std(z1), "tau": torch.tensor(self.tau), "views": [v1, v2],
                "feats": [h1, h2], "z": [z1, z2], "p": [p1, p2]}


class MoCoV2Plus(_MomentumMethod):
    """MoCo v2+ (Chen et al. 2020, arXiv 2003.04297; solo-learn's symmetric variant): InfoNCE of the query of one
    view against the momentum key of the other and a queue of past keys, symmetrised; tau 0.99 -> 0.999.
    ``queue_size`` 65,536 in the paper; keep it below the number of training images on small data."""

    projector_kind = "mocov2plus_projector"
    view_recipe = "mocov2plus"

    def __init__(self, backbone, temperature: float = 0.2, queue_size: int = 65536, base_tau: float = 0.99,
                 final_tau: float = 0.999, **kw):
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau, **kw)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.temperature = temperature
        self.register_buffer("queue", torch.zeros(2, queue_size, self.embed_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = self.make_views(batch)[:2]
        (h1, q1), (h2, q2) = self.embed(v1), self.embed(v2)
        k1, k2 = self.target_embed(v1), self.target_embed(v2)
        k1, k2 = F.normalize(k1.float(), dim=1), F.normalize(k2.float(), dim=1)
        keys = torch.stack([gather_with_grad(k1), gather_with_grad(k2)])  # every rank's keys join the queue
        # Only real keys serve as negatives: random initial queue entries push a small embedding into collapse.
        filled = int(self.queue_filled)
        queue = self.queue[:, :filled].clone() if filled else keys.detach()
        loss = (losses.info_nce(q1, k2, queue[1], self.temperature) + losses.info_nce(q2, k1, queue[0], self.temperature)) / 2
        self._pending = keys
        return {"loss": loss, "z_std": _embedding_std(q1), "views": [v1, v2], "feats": [h1, h2], "z": [q1, q2]}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        super().on_step_end(progress)
        if self._pending is not None:
            keys, self._pending = self._pending, None
            size, b = self.queue.shape[1], keys.shape[1]
            idx = (self.queue_ptr + torch.arange(b, device=keys.device)) % size
            self.queue[:, idx[-size:]] = keys[:, -size:].to(self.queue.dtype)
            self.queue_ptr.copy_((self.queue_ptr + b) % size)
            self.queue_filled.add_(b).clamp_(max=size)


class SimSiam(SSLMethod):
    """SimSiam (Chen & He 2021, arXiv 2011.10566): L = D(p1, sg(z2))/2 + D(p2, sg(z1))/2 with D the negative cosine.
    ``stop_gradient=False`` removes the stop-gradient and shows the collapse the paper describes.
    ``predictor_lr_scale``: the predictor's learning rate as a multiple of the rest's (1: the paper's default;
    see :class:`BYOL`)."""

    projector_kind = "simsiam_projector"
    view_recipe = "simsiam"

    def __init__(self, backbone, stop_gradient: bool = True, pred_hidden: int | None = None,
                 predictor_lr_scale: float = 1.0, **kw):
        super().__init__(backbone, **kw)
        self.stop_gradient = stop_gradient
        scale = kw.get("head_scale", 1.0)
        self.predictor = head("simsiam_predictor", self.embed_dim, scale=scale, hidden=pred_hidden, out=self.embed_dim)
        self.lr_scales = _predictor_lr_scales(predictor_lr_scale)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = self.make_views(batch)[:2]
        (h1, z1), (h2, z2) = self.embed(v1), self.embed(v2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = (z1.detach(), z2.detach()) if self.stop_gradient else (z1, z2)
        loss = (losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1)) / 2
        return {"loss": loss, "z_std": _embedding_std(z1), "views": [v1, v2], "feats": [h1, h2], "z": [z1, z2],
                "p": [p1, p2]}


class BarlowTwins(SSLMethod):
    """Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): the cross-correlation of the standardised projections
    is pushed to the identity; lambda_offdiag 5e-3, ``scale`` 0.1 as solo-learn/CaSSLe."""

    projector_kind = "barlow_projector"
    view_recipe = "byol"

    def __init__(self, backbone, lambda_offdiag: float = 5e-3, scale: float = 0.1, **kw):
        super().__init__(backbone, **kw)
        self.lambda_offdiag, self.scale = lambda_offdiag, scale

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = self.make_views(batch)[:2]
        (h1, z1), (h2, z2) = self.embed(v1), self.embed(v2)
        g1, g2 = gather_with_grad(z1), gather_with_grad(z2)  # cross-correlation over the global batch
        loss = losses.barlow_twins(g1, g2, lambda_offdiag=self.lambda_offdiag, scale=self.scale)
        return {"loss": loss, "z_std": _embedding_std(g1), "views": [v1, v2], "feats": [h1, h2], "z": [z1, z2]}


class VICReg(SSLMethod):
    """VICReg (Bardes et al. 2022, arXiv 2105.04906): invariance (MSE) + variance (hinge on the per-dim std) +
    covariance (off-diagonal) terms, weights 25 / 25 / 1. ``halve_variance``: the variance term is the mean over
    the two views (True, the VICReg code) or their sum (False, the CaSSLe code: the CaSSLe preset's choice)."""

    projector_kind = "vicreg_projector"
    view_recipe = "byol"

    def __init__(self, backbone, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0,
                 halve_variance: bool = True, **kw):
        super().__init__(backbone, **kw)
        self.weights = dict(sim_weight=sim_weight, var_weight=var_weight, cov_weight=cov_weight)
        self.halve_variance = bool(halve_variance)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = self.make_views(batch)[:2]
        (h1, z1), (h2, z2) = self.embed(v1), self.embed(v2)
        g1, g2 = gather_with_grad(z1), gather_with_grad(z2)  # variance and covariance over the global batch
        terms = losses.vicreg_terms(g1, g2, halve_variance=self.halve_variance)
        loss = losses.vicreg_from_terms(terms, **self.weights)
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}, "views": [v1, v2], "feats": [h1, h2],
                "z": [z1, z2]}


PROTOTYPE_NORMS = ("unit", "weight_norm")


class SwAV(SSLMethod):
    """SwAV (Caron et al. 2020, arXiv 2006.09882): online clustering. Normalised projections are scored against
    ``num_prototypes`` prototypes; Sinkhorn-Knopp (eps 0.05, 3 iterations) turns each global crop's scores into
    codes that the other crops predict (swapped prediction, temperature 0.1). Prototypes are frozen for the first
    ``freeze_prototypes_epochs`` epochs; an optional queue of past projections (``queue_size``, from
    ``queue_start_epoch``) stabilises Sinkhorn when the batch is small.

    prototype_norm: ``"unit"`` (the SwAV paper and code: rows renormalised to length 1 before every step) or
        ``"weight_norm"`` (CaSSLe/solo-learn: ``weight_norm`` of the prototype layer, each row a learnable length
        times a unit direction, nothing renormalised).
    num_local_crops, local_crop_size, local_crop_scale: multi-crop (SwAV; EffSSL's one released run: 2 global
        crops of 224 px at scale 0.14-1 plus 6 local crops of 96 px at 0.05-0.14). Local crops are SimCLR-style
        views like the global ones; they go through the networks as one batch and only predict codes (the loss's
        ``local_scores``): codes come from the two global crops. Default 0: two views.
    """

    projector_kind = "swav_projector"
    exclude_bias_norm = True

    def __init__(self, backbone, num_prototypes: int = 3000, temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, freeze_prototypes_epochs: int = 2, queue_size: int = 0,
                 queue_start_epoch: int = 0, prototype_norm: str = "unit", num_local_crops: int = 0,
                 local_crop_size: int | None = None, local_crop_scale: tuple[float, float] = (0.05, 0.14), **kw):
        super().__init__(backbone, **kw)
        if num_prototypes < 2:
            raise ValueError(f"num_prototypes must be >= 2, got {num_prototypes}")
        if prototype_norm not in PROTOTYPE_NORMS:
            raise ValueError(f"prototype_norm must be one of {', '.join(PROTOTYPE_NORMS)}, got {prototype_norm!r}")
        if isinstance(num_local_crops, bool) or not isinstance(num_local_crops, int) or num_local_crops < 0:
            raise ValueError(f"num_local_crops must be an int >= 0 (SwAV: 6), got {num_local_crops!r}")
        self.prototype_norm = prototype_norm
        self.prototypes = self.new_prototypes(num_prototypes)
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, sinkhorn_iterations
        self.freeze_prototypes_epochs, self.queue_start_epoch = freeze_prototypes_epochs, queue_start_epoch
        self.num_local_crops = num_local_crops
        if num_local_crops:
            self.views = self._multi_crop_views(num_local_crops, local_crop_size, local_crop_scale)
        self.register_buffer("queue", torch.zeros(2, queue_size, self.embed_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.epoch = 0
        self._pending: torch.Tensor | None = None

    def new_prototypes(self, count: int) -> nn.Linear:
        """A fresh (embed_dim -> count) prototype layer in this method's ``prototype_norm`` (CaSSLe's
        distillation prototypes are built the same way)."""
        layer = nn.Linear(self.embed_dim, count, bias=False)
        if self.prototype_norm == "weight_norm":
            layer = nn.utils.parametrizations.weight_norm(layer, dim=0)
        return layer.to(next(self.backbone.parameters()).device)

    def _multi_crop_views(self, count: int, size: int | None, scale: tuple[float, float]) -> augment.MultiView:
        size = size or max(8, round(self.image_size * 96 / 224))  # SwAV's 96 px local crops at 224 px
        local = augment.views_for(self.view_recipe, size, *self.stats, **{**self.view_options,
                                                                        "scale": tuple(scale)})
        return augment.MultiView(list(self.views.views[:2]) + [local.views[0]] * count)

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def scores(self, z: torch.Tensor, prototypes: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, D) projections -> (B, K) scores of the normalised z against the prototype rows (normalised
        with ``prototype_norm="unit"``, as they are with ``"weight_norm"``)."""
        w = self.prototypes.weight if prototypes is None else prototypes
        w = F.normalize(w, dim=1) if self.prototype_norm == "unit" else w
        return F.normalize(z, dim=1) @ w.t()

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.prototype_norm == "unit":
            with torch.no_grad():
                self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        views = self.make_views(batch)
        (h1, local1), (h2, local2) = self.embed(views[0]), self.embed(views[1])
        z1, z2 = gather_with_grad(local1), gather_with_grad(local2)  # Sinkhorn's equipartition over the global batch
        frozen = self.epoch < self.freeze_prototypes_epochs
        protos = self.prototypes.weight.detach() if frozen else None
        s1, s2 = self.scores(z1, protos), self.scores(z2, protos)
        local_scores = []
        if len(views) > 2:  # multi-crop: the local crops (one size) as one batch through the networks
            _, z_local = self.embed(torch.cat(views[2:]))
            local_scores = [self.scores(gather_with_grad(z), protos) for z in z_local.chunk(len(views) - 2)]
        queue1 = queue2 = None
        use_queue = self.queue.shape[1] > 0 and self.epoch >= self.queue_start_epoch
        if use_queue and int(self.queue_filled) >= self.queue.shape[1]:
            with torch.no_grad():
                queue1, queue2 = self.scores(self.queue[0]), self.scores(self.queue[1])
        loss = losses.swav_loss(s1, s2, self.temperature, self.epsilon, self.iterations, queue1, queue2,
                                local_scores=local_scores)
        if use_queue:
            self._pending = torch.stack([F.normalize(z1.detach().float(), dim=1), F.normalize(z2.detach().float(), dim=1)])
        return {"loss": loss, "z_std": _embedding_std(z1), "views": views, "feats": [h1, h2], "z": [local1, local2]}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        if self._pending is not None:
            z, self._pending = self._pending, None
            b, size = z.shape[1], self.queue.shape[1]
            self.queue.copy_(torch.cat([z, self.queue], dim=1)[:, :size].to(self.queue.dtype))
            self.queue_filled.add_(b)


# The seven objectives by registered name (``methods.METHODS`` adds the rest; CaSSLe builds its base from these).
SSL_CLASSES: dict[str, type[SSLMethod]] = {"simclr": SimCLR, "byol": BYOL, "mocov2plus": MoCoV2Plus, "simsiam": SimSiam,
                                           "barlow_twins": BarlowTwins, "vicreg": VICReg, "swav": SwAV}
