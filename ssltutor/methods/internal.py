"""Internal pretext task (Xie, Yang et al., IEEE Access 2023, arXiv 2106.04921) and SLA (Lee et al., ICML 2020).

Both are *joint-label* classifiers. Each training image of class ``y`` becomes K transformed copies; one classifier
outputs N * K logits and is trained with cross-entropy on the joint label ``y * K + k`` of copy ``k``
(:func:`joint_labels`). They differ in where the transformation happens:

* **SLA** (:class:`SLA`): the *input* is rotated by k quarter turns (an external pretext task, K = 4).
* **Internal pretext** (:class:`InternalPretext`): after stage ``stage`` of the backbone the feature map is copied
  M ways and copy j has channel group j zeroed ("discarded"); only the layers after that point run on the M * B
  batch. With ``rotation=True`` both are combined (K = 4 * M), with ``contrastive_weight > 0`` FKT's joint objective
  (lambda * NT-Xent of two views through a projector) is added.

Copy ``k`` of a batch of B images occupies rows ``k * B .. (k + 1) * B`` of the expanded batch, and
``k = t * R + r`` for feature transform t (0..T-1) and rotation r (0..R-1, R = 4 with rotations, else 1).
Transform 0 is the identity when ``include_identity=True`` (then transform t >= 1 discards group t - 1), else it
discards group 0.

Inference (:meth:`JointLabelMethod.predict`): ``"single"`` takes copy k = 0 alone and its columns ``y * K + 0``;
``"aggregated"`` averages over k the logit of (y, k) under transform k (:func:`aggregated_logits`).

No code of the internal-pretext paper is public and its PDF was not available to us: the layer, M, the identity
copy, zeroing vs rescaling and the inference rule are our choices, all options here (see the notebook
``03_internal_pretext_task``). The joint-label machinery follows SLA's released code (``hankook/SLA``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..data import augment
from ..models import Backbone, head
from .base import Batch, Method

GROUPINGS = ("contiguous", "random")
INFERENCE_MODES = ("single", "aggregated")
CONTRASTIVE_VIEWS = ("simclr", "fkt")
NUM_ROTATIONS = 4


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


# ------------------------------------------------------------------------------------------------------------------
# Joint labels
# ------------------------------------------------------------------------------------------------------------------


def joint_labels(y: torch.Tensor, j: torch.Tensor | int, num_transforms: int) -> torch.Tensor:
    """SLA's joint label ``y * M + j`` (class-major: the M transforms of class y are adjacent columns).

    y: (B,) int64 classes; j: transform index, an int or (B,) int64 in [0, M); num_transforms: M >= 1.
    Returns (B,) int64 in [0, N * M).
    """
    if num_transforms < 1:
        raise ValueError(f"num_transforms must be >= 1, got {num_transforms}")
    j = torch.as_tensor(j, device=y.device, dtype=torch.long)
    if j.numel() and (int(j.min()) < 0 or int(j.max()) >= num_transforms):
        raise ValueError(f"transform indices must be in [0, {num_transforms}), got {j.tolist()}")
    return y.long() * num_transforms + j


def decode(joint: torch.Tensor, num_transforms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`joint_labels`: joint (B,) -> (class y, transform j) = (joint // M, joint % M)."""
    if num_transforms < 1:
        raise ValueError(f"num_transforms must be >= 1, got {num_transforms}")
    return torch.div(joint, num_transforms, rounding_mode="floor"), joint.remainder(num_transforms)


def _check_joint_logits(logits: torch.Tensor, num_transforms: int) -> tuple[int, int]:
    if logits.ndim != 3 or logits.shape[0] != num_transforms or logits.shape[2] % num_transforms:
        raise ValueError(f"logits must be (K={num_transforms}, B, N * K), got shape {tuple(logits.shape)}")
    return logits.shape[1], logits.shape[2] // num_transforms


def aggregated_logits(logits: torch.Tensor, num_transforms: int) -> torch.Tensor:
    """SLA+AG: ``z_agg(y) = (1 / K) sum_k z_{y * K + k}(t_k(x))``.

    logits: (K, B, N * K), ``logits[k]`` the joint logits of copy k. Returns (B, N).
    """
    batch, classes = _check_joint_logits(logits, num_transforms)
    per_copy = logits.reshape(num_transforms, batch, classes, num_transforms)
    return torch.diagonal(per_copy, dim1=0, dim2=3).mean(-1)  # entry [b, y, k] = logits[k, b, y * K + k]


def single_logits(logits: torch.Tensor, num_transforms: int) -> torch.Tensor:
    """SLA+SI: copy 0 and its columns ``y * K + 0``. logits: (K', B, N * K) (any K' >= 1 leading copies) or
    (B, N * K) of copy 0 -> (B, N)."""
    logits = logits[0] if logits.ndim == 3 else logits
    if logits.ndim != 2 or logits.shape[1] % num_transforms:
        raise ValueError(f"logits of copy 0 must be (B, N * K) with K={num_transforms}, got {tuple(logits.shape)}")
    return logits[:, ::num_transforms]


# ------------------------------------------------------------------------------------------------------------------
# Channel discarding
# ------------------------------------------------------------------------------------------------------------------


def channel_groups(num_channels: int, num_groups: int, grouping: str = "contiguous", seed: int = 0) -> torch.Tensor:
    """Group id (0..M-1) of each of C channels: (C,) int64.

    ``"contiguous"``: channels [g * C / M, (g + 1) * C / M) form group g (sizes differ by at most one when M does not
    divide C). ``"random"``: the same sizes over a permutation drawn from ``seed`` (fixed for the whole run).
    """
    _choice("grouping", grouping, GROUPINGS)
    if not 2 <= num_groups <= num_channels:
        raise ValueError(f"num_groups must be in [2, {num_channels}] (the channels at this stage), got {num_groups}")
    groups = torch.arange(num_channels) * num_groups // num_channels
    if grouping == "random":
        order = torch.randperm(num_channels, generator=torch.Generator().manual_seed(seed))
        groups = groups[torch.argsort(order)]  # channel order[i] gets the group of position i
    return groups


def discard_masks(groups: torch.Tensor, include_identity: bool = False, rescale: bool = False) -> torch.Tensor:
    """(T, C) multiplicative masks, one row per feature transform: row j zeroes the channels of group j (rows shift
    by one after an all-ones identity row when ``include_identity``). ``rescale`` multiplies the kept channels of a
    discarding row by C / kept (= M / (M - 1) for equal groups), so the total activation keeps its scale."""
    num_groups = int(groups.max()) + 1
    masks = (groups.unsqueeze(0) != torch.arange(num_groups).unsqueeze(1)).float()
    if rescale:
        masks = masks * (groups.numel() / masks.sum(1, keepdim=True))
    if include_identity:
        masks = torch.cat([torch.ones(1, groups.numel()), masks])
    return masks


def discard_channels(feature_map: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Copy a feature map once per mask: (B, C, ...) and (T, C) -> (T * B, C, ...), rows t * B .. (t + 1) * B being
    ``feature_map * masks[t]`` (broadcast over the spatial axes)."""
    if masks.ndim != 2 or masks.shape[1] != feature_map.shape[1]:
        raise ValueError(f"masks must be (T, C={feature_map.shape[1]}), got shape {tuple(masks.shape)}")
    shape = (masks.shape[0], 1, masks.shape[1]) + (1,) * (feature_map.ndim - 2)
    out = feature_map.unsqueeze(0) * masks.to(feature_map.dtype).reshape(shape)
    return out.flatten(0, 1)


def rotate_copies(x: torch.Tensor, num_rotations: int = NUM_ROTATIONS) -> torch.Tensor:
    """(B, 3, S, S) -> (R * B, 3, S, S): rows r * B .. (r + 1) * B turned by r quarter turns (SLA uses every
    rotation of every image, not a random one)."""
    turns = torch.arange(num_rotations, device=x.device).repeat_interleave(x.shape[0])
    return augment.apply_rotate90(x.repeat(num_rotations, 1, 1, 1), turns)


# ------------------------------------------------------------------------------------------------------------------
# Methods
# ------------------------------------------------------------------------------------------------------------------


class JointLabelMethod(Method):
    """What SLA and the internal pretext task share: expanded copies, one N*K-way classifier, joint-label CE,
    single/aggregated inference and the optional FKT term. Subclasses call :meth:`_setup` from their ``__init__``
    (this class has no ``__init__`` of its own, so ``create`` lists only each subclass's options)."""

    def _setup(self, num_classes: int, masks: torch.Tensor | None, stage: int, rotation: bool, image_size: int,
               stats, augment_views: str, inference: str, contrastive_weight: float = 0.0,
               temperature: float = 0.5, normalize: bool = True, contrastive_views: str = "simclr",
               head_scale: float = 1.0) -> None:
        if num_classes is None or num_classes < 2:
            raise ValueError(f"{type(self).__name__} needs num_classes >= 2, got {num_classes}")
        _choice("inference", inference, INFERENCE_MODES)
        _choice("contrastive_views", contrastive_views, CONTRASTIVE_VIEWS)
        if contrastive_weight < 0:
            raise ValueError(f"contrastive_weight must be >= 0 (0 turns the FKT term off), got {contrastive_weight}")
        self.num_classes, self.stage, self.rotation, self.inference = num_classes, stage, rotation, inference
        masks = masks if masks is not None else torch.ones(1, self.backbone.stage_channels[stage])
        self.register_buffer("masks", masks)
        self.identity_first = bool((masks[0] == 1).all())  # transform 0 discards nothing
        self.num_rotations = NUM_ROTATIONS if rotation else 1
        self.classifier = nn.Linear(self.backbone.feature_dim, num_classes * self.num_transforms)
        views = augment.supervised_views(image_size, *stats, recipe=augment_views).views
        self.contrastive_weight, self.temperature, self.normalize = contrastive_weight, temperature, normalize
        if contrastive_weight > 0:
            self.projector = head("simclr_projector", self.backbone.feature_dim, scale=head_scale)
            views = views + augment.views_for(contrastive_views, image_size, *stats).views
        self.views = augment.MultiView(views)

    @property
    def num_feature_transforms(self) -> int:
        """T: rows of ``masks`` (1 for SLA)."""
        return self.masks.shape[0]

    @property
    def num_transforms(self) -> int:
        """K = T * R: the number of copies of each image and of joint labels per class."""
        return self.num_feature_transforms * self.num_rotations

    @property
    def pooled_discard(self) -> bool:
        """Discarding after the last stage commutes with global average pooling, so it is applied to the pooled
        (B, C) features: the same numbers, without copying the feature map."""
        return self.stage == len(self.backbone.stages) - 1

    def joint_logits(self, x: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """x: (B, 3, S, S) normalized images -> (K, B, N * K) joint logits, copy k in ``[k]``.
        ``first_only``: copy 0 alone (no rotation, feature transform 0) -> (1, B, N * K)."""
        batch = x.shape[0]
        masks = self.masks[:1] if first_only else self.masks
        if self.rotation and not first_only:
            x = rotate_copies(x, self.num_rotations)
        f = self.backbone.forward_stages(self.backbone.stem(x), 0, self.stage + 1)
        if masks.shape[0] == 1 and self.identity_first:  # nothing discarded: the plain network
            h = self.backbone.pool(self.backbone.forward_stages(f, self.stage + 1))
        elif self.pooled_discard:
            h = discard_channels(self.backbone.pool(f), masks)
        else:
            f = discard_channels(f, masks).contiguous(memory_format=self.memory_format)
            h = self.backbone.pool(self.backbone.forward_stages(f, self.stage + 1))
        return self.classifier(h).reshape(-1, batch, self.classifier.out_features)

    def joint_targets(self, y: torch.Tensor) -> torch.Tensor:
        """(B,) classes -> (K * B,) joint labels in the row order of :meth:`joint_logits`."""
        k = torch.arange(self.num_transforms, device=y.device).repeat_interleave(y.shape[0])
        return joint_labels(y.repeat(self.num_transforms), k, self.num_transforms)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        views = self.make_views(batch)
        logits = self.joint_logits(views[0])
        targets = self.joint_targets(batch.labels)
        loss = F.cross_entropy(logits.flatten(0, 1), targets)
        out = {"joint_loss": loss.detach(), "joint_acc": (logits.flatten(0, 1).argmax(1) == targets).float().mean(),
               "acc": (aggregated_logits(logits.detach(), self.num_transforms).argmax(1) == batch.labels).float().mean()}
        if self.contrastive_weight > 0:
            z1, z2 = (self.projector(self.backbone(v)) for v in views[1:3])
            ssl = losses.nt_xent(z1, z2, self.temperature, normalize=self.normalize)
            loss = loss + self.contrastive_weight * ssl
            out["ssl_loss"] = ssl.detach()
        out["loss"] = loss
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """x: normalized (B, 3, S, S) -> (B, num_classes) class scores. ``mode``: ``"single"`` (copy 0 only: the
        identity path if there is one, else discard group 0; no rotation) or ``"aggregated"`` (mean over all K
        copies); default: the ``inference`` option."""
        mode = self.inference if mode is None else mode
        _choice("mode", mode, INFERENCE_MODES)
        if mode == "single":
            return single_logits(self.joint_logits(x, first_only=True), self.num_transforms)
        return aggregated_logits(self.joint_logits(x), self.num_transforms)


class InternalPretext(JointLabelMethod):
    """Internal pretext task: discard channel group j of the feature map after stage ``stage`` and predict the joint
    label (class, j) with one N*M-way classifier (Xie, Yang et al. 2023, arXiv 2106.04921; our reading, see module
    docstring).

    num_classes: N. stage: index into ``backbone.stages`` after which channels are discarded, negative from the end
    (default -2: the stage before the last. After the last stage discarding acts on the pooled vector that the one
    linear classifier reads, which can then tell the discarded group from the zeros alone, for any features: the
    pretext half of the joint label asks nothing of the backbone, and the method becomes an ensemble of heads over
    masked copies; -1 is that cheapest variant). num_groups: M channel groups, one discarded per copy.
    include_identity: add an undiscarded copy as transform 0 (then K = M + 1). grouping: ``"contiguous"`` or
    ``"random"`` (a partition drawn once from ``group_seed``). rescale: scale kept channels by C / kept.
    rotation: combine with SLA's four input rotations (K = 4 * T). contrastive_weight: lambda of FKT's joint
    objective, CE + lambda * NT-Xent(z1, z2; ``temperature``, ``normalize``) on two ``contrastive_views`` through a
    SimCLR projector scaled by ``head_scale`` (0 = off). augment_views: the classification view's recipe.
    inference: default mode of :meth:`predict`.
    """

    def __init__(self, backbone: Backbone, num_classes: int, stage: int = -2, num_groups: int = 4,
                 include_identity: bool = False, grouping: str = "contiguous", rescale: bool = False,
                 group_seed: int = 0, rotation: bool = False, contrastive_weight: float = 0.0,
                 temperature: float = 0.5, normalize: bool = True, contrastive_views: str = "simclr",
                 head_scale: float = 1.0, image_size: int = 32, stats=augment.IMAGENET_STATS,
                 augment_views: str = "crop_flip", inference: str = "aggregated"):
        super().__init__(backbone, image_size, stats)
        stages = list(range(len(backbone.stages)))
        _choice("stage", stage, stages + [-s for s in range(1, len(stages) + 1)])
        stage = stages[stage]  # -1: the last stage, -2 the one before it, ...
        self.num_groups, self.grouping, self.rescale, self.group_seed = num_groups, grouping, rescale, group_seed
        self.include_identity = include_identity
        groups = channel_groups(backbone.stage_channels[stage], num_groups, grouping, group_seed)
        self.register_buffer("groups", groups)
        self._setup(num_classes, discard_masks(groups, include_identity, rescale), stage, rotation, image_size,
                    stats, augment_views, inference, contrastive_weight, temperature, normalize, contrastive_views,
                    head_scale)


class SLA(JointLabelMethod):
    """Self-supervised label augmentation (Lee, Hwang & Shin, ICML 2020): every image in its four rotations, joint
    labels (class, rotation), one 4N-way classifier; single inference uses the unrotated copy, aggregated averages
    the four. The external-pretext counterpart of :class:`InternalPretext`."""

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 32, stats=augment.IMAGENET_STATS,
                 augment_views: str = "crop_flip", inference: str = "aggregated"):
        super().__init__(backbone, image_size, stats)
        self._setup(num_classes, None, len(backbone.stages) - 1, True, image_size, stats, augment_views, inference)


__all__ = ["GROUPINGS", "INFERENCE_MODES", "joint_labels", "decode", "aggregated_logits", "single_logits",
           "channel_groups", "discard_masks", "discard_channels", "rotate_copies", "JointLabelMethod",
           "InternalPretext", "SLA"]
