"""Rotation prediction as an auxiliary task for any SSL method (EffSSL, Addepalli et al. 2022, arXiv 2210.09866),
and the pure RotNet pretext task (Gidaris et al. 2018, arXiv 1803.07728) as a baseline.

Instance-similarity objectives (SimCLR, BYOL, MoCo, SwAV) learn from noisy targets: two random crops may not share
the object. EffSSL adds a well-posed task that converges fast: each augmented view of the online branch is turned
by an independent random quarter turn, passed through the **same backbone** in an extra forward pass, and a
rotation head on the pooled features predicts the angle::

    L = L_ssl + w * (CE(g(f(rot(v1, r1))), r1) + CE(g(f(rot(v2, r2))), r2)),   r1, r2 ~ U{0, 90, 180, 270}

with ``w = 0.1`` and the two terms **summed** (the released SwAV code, EffSSL, arXiv 2210.09866); ``g`` is
Linear-BN-ReLU-Linear(4) as wide as the method's projector hidden layer.

How the views are shared: every method builds its views in ``make_views(batch)`` and uses the first two. The
rotation variant of a method class (``rotation_class(SimCLR)``, registered as ``"simclr_rot"`` etc.) overrides
``make_views`` to keep what the base produced, lets the base ``step`` compute ``L_ssl`` untouched, then rotates
those very views (as the EffSSL code rotates SwAV's augmented crops). Nothing in the base classes changes.

Usage::

    create("simclr_rot", rotation_weight=0.1)          # any registered SSL method + "_rot"
    with_rotation(BYOL)                                 # the rotation class of any Method subclass
    with_rotation(create("vicreg"))                     # an existing instance, converted in place
    create("rotnet")                                    # rotation prediction alone
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data import augment
from ..models import head
from .base import Batch, Method

ROTATION_WEIGHT = 0.1  # EffSSL code default and script value (arXiv 2210.09866)
ROTATION_BASES = ("simclr", "byol", "mocov2plus", "simsiam", "barlow_twins", "vicreg", "swav")


# ------------------------------------------------------------------------------------------------------------------
# The shared piece: rotate, forward, classify
# ------------------------------------------------------------------------------------------------------------------
def rotation_logits(backbone: torch.nn.Module, rotation_head: torch.nn.Module, views: torch.Tensor,
                    turns: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
    """views: (B, 3, S, S) augmented views; turns: (B,) int64 in {0..3} quarter turns counter-clockwise.
    Returns (B, 4) rotation logits of ``rotation_head(backbone(rot90(views, turns)))``."""
    rotated = augment.apply_rotate90(views, turns).contiguous(memory_format=memory_format)
    return rotation_head(backbone(rotated))


def rotation_scores(logits: torch.Tensor, turns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, accuracy) of (B, 4) logits against the applied turns; CE in float32 under autocast."""
    loss = F.cross_entropy(logits.float(), turns)
    accuracy = (logits.detach().argmax(1) == turns).float().mean()
    return loss, accuracy


def _check_view_pipeline(views) -> None:
    """Refuse view pipelines that already rotate or flip vertically: then the angle cannot be recovered (a vertical
    flip then a half turn equals a horizontal flip), and the auxiliary task has no answer."""
    for view in getattr(views, "views", [views]):
        config = getattr(view, "config", None)
        if config is not None and (config.rotate90 or config.vflip_p > 0):
            raise ValueError("rotation prediction needs views without random quarter turns or vertical flips "
                             f"(got {config}); use a recipe without them (e.g. 'simclr', 'byol')")


def _default_hidden(method: Method, head_scale: float) -> int:
    """Rotation head width = the projector's hidden width (EffSSL, arXiv 2210.09866), else 2048 * head_scale."""
    projector = getattr(method, "projector", None)
    first = projector[0] if projector is not None and len(projector) else None
    if isinstance(first, torch.nn.Linear):
        return first.out_features
    return max(8, int(2048 * head_scale))


# ------------------------------------------------------------------------------------------------------------------
# SSL + rotation
# ------------------------------------------------------------------------------------------------------------------
class RotationAuxiliary(Method):
    """Mixin that adds EffSSL's rotation task to the method class after it in the MRO (see :func:`rotation_class`).

    Options (prefixed so that they never clash with the base method's):
      rotation_weight: w in ``L_ssl + w * sum_i CE_i`` (0.1, the EffSSL code); must be > 0 (for w = 0 train the
        base method).
      rotated_views: indices of the online views to rotate, default (0, 1) = both views (the paper); (0,) rotates
        only the first view (one extra forward instead of two).
      rotation_hidden: width of the head's hidden layer; default the projector's hidden width.

    ``step`` returns the base metrics plus ``loss`` (total), ``ssl``, ``rot`` (sum of the CEs, unweighted) and
    ``rot_acc`` (rotation accuracy over the rotated views).
    """

    def __init__(self, backbone, rotation_weight: float = ROTATION_WEIGHT, rotated_views: Sequence[int] = (0, 1),
                 rotation_hidden: int | None = None, **options):
        super().__init__(backbone, **options)
        self._setup_rotation(rotation_weight, rotated_views, rotation_hidden, options.get("head_scale", 1.0))

    def _setup_rotation(self, rotation_weight: float, rotated_views: Sequence[int], rotation_hidden: int | None,
                        head_scale: float = 1.0) -> None:
        if not rotation_weight > 0:
            raise ValueError(f"rotation_weight must be > 0 (EffSSL uses 0.1), got {rotation_weight!r}")
        rotated_views = tuple(rotated_views)
        if not rotated_views or len(set(rotated_views)) != len(rotated_views) or not all(
                isinstance(i, int) and 0 <= i < 2 for i in rotated_views):
            raise ValueError(f"rotated_views must list distinct view indices among (0, 1), got {rotated_views!r}")
        if rotation_hidden is not None and rotation_hidden < 1:
            raise ValueError(f"rotation_hidden must be a positive width, got {rotation_hidden!r}")
        _check_view_pipeline(self.views)
        self.rotation_weight, self.rotated_views = float(rotation_weight), rotated_views
        width = rotation_hidden or _default_hidden(self, head_scale)
        device = next(self.backbone.parameters()).device
        self.rotation_head = head("rotation_head", self.backbone.feature_dim, hidden=width).to(device)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = super().step(batch)
        views = out.get("views")  # the views the base method trained on: the rotation task rotates exactly these
        if views is None or len(views) <= max(self.rotated_views):
            raise RuntimeError(f"{type(self).__name__}: the base step must return its views (``views``), at "
                               f"least {max(self.rotated_views) + 1} of them")
        rot, correct = 0.0, 0.0
        for i in self.rotated_views:
            turns = augment.rotate90_params(views[i].shape[0], batch.generator, views[i].device)
            ce, acc = rotation_scores(rotation_logits(self.backbone, self.rotation_head, views[i], turns,
                                                      self.memory_format), turns)
            rot, correct = rot + ce, correct + acc
        ssl = out["loss"]
        out.update(loss=ssl + self.rotation_weight * rot, ssl=ssl.detach(), rot=rot.detach(),
                   rot_acc=correct / len(self.rotated_views))
        return out


_ROTATION_CLASSES: dict[type, type] = {}


def rotation_class(base: type[Method]) -> type[Method]:
    """The rotation variant of a method class, e.g. ``rotation_class(SimCLR)`` -> ``SimCLRRotation`` (a subclass of
    both :class:`RotationAuxiliary` and ``SimCLR``: same constructor options plus the rotation ones). Cached, so
    each base gets one class (checkpoints and ``isinstance`` stay consistent)."""
    if not (isinstance(base, type) and issubclass(base, Method)):
        raise ValueError(f"base must be a Method subclass (e.g. SimCLR), got {base!r}")
    if issubclass(base, (RotationAuxiliary, RotNet)):
        raise ValueError(f"{base.__name__} already predicts rotations")
    if base not in _ROTATION_CLASSES:
        name = f"{base.__name__}Rotation"
        doc = f"{base.__name__} + EffSSL's rotation prediction (:class:`RotationAuxiliary`)."
        cls = type(name, (RotationAuxiliary, base), {"__doc__": doc, "__module__": __name__, "__qualname__": name})
        globals().setdefault(name, cls)  # importable by name, so that pickle finds it
        _ROTATION_CLASSES[base] = cls
    return _ROTATION_CLASSES[base]


def with_rotation(method, rotation_weight: float = ROTATION_WEIGHT, rotated_views: Sequence[int] = (0, 1),
                  rotation_hidden: int | None = None):
    """Add the rotation task to a method.

    ``method`` a class: returns :func:`rotation_class` (the options are then constructor arguments; passing them
    here too is an error). ``method`` an instance: converts it **in place** into its rotation variant (its
    networks, views and state are kept; a rotation head is added on the backbone's device) and returns it.
    """
    if isinstance(method, type):
        if (rotation_weight, tuple(rotated_views), rotation_hidden) != (ROTATION_WEIGHT, (0, 1), None):
            raise ValueError("with_rotation(<class>) returns the class: give the rotation options to its constructor")
        return rotation_class(method)
    if not isinstance(method, Method):
        raise ValueError(f"method must be a Method instance or class, got {type(method).__name__}")
    base = type(method)
    method.__class__ = rotation_class(base)
    try:
        method._setup_rotation(rotation_weight, rotated_views, rotation_hidden)
    except ValueError:
        method.__class__ = base  # leave the caller's method as it was
        raise
    return method


# ------------------------------------------------------------------------------------------------------------------
# RotNet: rotation prediction alone
# ------------------------------------------------------------------------------------------------------------------
class RotNet(Method):
    """RotNet (Gidaris, Singh, Komodakis 2018, arXiv 1803.07728): predict which of the four quarter turns was applied.

    One light view per image (``augment_views``: random resized crop (0.35, 1) + horizontal flip, the paper's
    "random crop + flip" at our scale; "none" for no augmentation); ``all_rotations=True`` feeds all four
    rotated copies of every image in one batch (the paper's best setting, 4B images per step), ``False`` one
    random turn per image. The head is EffSSL's rotation head (Linear-BN-ReLU-Linear(4)), not RotNet's conv
    blocks. Returns ``loss`` and ``rot_acc``.
    """

    def __init__(self, backbone, image_size: int = 32, stats=augment.IMAGENET_STATS, head_scale: float = 1.0,
                 rotation_hidden: int | None = None, all_rotations: bool = True, augment_views: str = "crop_flip"):
        super().__init__(backbone, image_size, stats)
        if rotation_hidden is not None and rotation_hidden < 1:
            raise ValueError(f"rotation_hidden must be a positive width, got {rotation_hidden!r}")
        self.views = augment.supervised_views(image_size, *stats, recipe=augment_views)
        self.all_rotations = bool(all_rotations)
        self.rotation_head = head("rotation_head", backbone.feature_dim, hidden=rotation_hidden or
                                  max(8, int(2048 * head_scale)))

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        (x,) = self.make_views(batch)
        if self.all_rotations:
            b = x.shape[0]
            x = x.repeat(4, 1, 1, 1)
            turns = torch.arange(4, device=x.device).repeat_interleave(b)
        else:
            turns = augment.rotate90_params(x.shape[0], batch.generator, x.device)
        loss, accuracy = rotation_scores(rotation_logits(self.backbone, self.rotation_head, x, turns,
                                                         self.memory_format), turns)
        return {"loss": loss, "rot_acc": accuracy}


def rotation_methods(methods: dict[str, type[Method]]) -> dict[str, type[Method]]:
    """``{"<base>_rot": rotation class}`` for each name of :data:`ROTATION_BASES` present in ``methods``, plus
    ``"rotnet"``: what ``ssltutor.methods`` registers."""
    found = {f"{name}_rot": rotation_class(methods[name]) for name in ROTATION_BASES if name in methods}
    return {**found, "rotnet": RotNet}


__all__ = ["ROTATION_WEIGHT", "ROTATION_BASES", "RotationAuxiliary", "RotNet", "rotation_class", "with_rotation",
           "rotation_logits", "rotation_scores", "rotation_methods"]
