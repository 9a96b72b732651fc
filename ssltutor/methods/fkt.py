"""Functional knowledge transfer (FKT; Chhipa et al., ICIP 2023, arXiv 2304.01354) and its two baselines.

*Representational* transfer (RT) learns a representation first (SimCLR on the train split) and then fine-tunes the
whole network on the labels: two stages, the SSL objective is gone when the classifier trains. *Functional* transfer
optimises both objectives at once, in one stage, through one shared backbone f::

    L_FKT = CE(classifier(f(x)), y) + lambda * NT-Xent(g(f(v1)), g(f(v2)))

x is the clean image (the released code) or an augmented view, v1/v2 are two SSL views of x, g the projector.
The NT-Xent term is a whole SimCLR method (Chen et al. 2020, arXiv 2002.05709) with FKT's projector, temperature,
similarity and views (:func:`fkt_simclr`): FKT adds the classifier and its cross-entropy to that method's loss, and
representational transfer pre-trains with the same SimCLR.

This module holds the method (:class:`FKT`), its SimCLR branch, views and projector; the experiment around it (the
three variants, model selection) is :mod:`ssltutor.studies.fkt`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import augment
from ..models import Backbone, mlp
from .base import Batch, Wrapper
from .ssl import SimCLR

SIMILARITIES = ("cosine", "dot")
CLASSIFIER_INPUTS = ("clean", "augmented")
# The released code's projector on ResNet-18 features: Linear(512, 1024) -> ReLU -> Linear(1024, 128), no BN.
PROJECTOR_REFERENCE = (512, 1024, 128)


def check_choice(name: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


class FullPrecisionViews:
    """A view pipeline run with autocast off. ``fit`` calls ``step`` under bf16 autocast, and the batched blur of
    ``augment`` (a conv2d) then returns bf16 rows that cannot be written back into the float32 batch. Views are
    cheap next to the network, so they run in float32 (workaround until ``ViewTransform`` disables autocast)."""

    def __init__(self, views: augment.MultiView):
        self.views = views

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        with torch.autocast(images.device.type, enabled=False):
            return self.views(images, generator)

    def __len__(self) -> int:
        return len(self.views)


def fkt_view_pipeline(size: int, stats, color_jitter: bool = False, hflip: bool = False) -> FullPrecisionViews:
    """FKT's two SSL views (``augment.fkt_views``; the code's quirks kept unless ``color_jitter``/``hflip``)."""
    return FullPrecisionViews(augment.fkt_views(size, *stats, color_jitter=color_jitter, hflip=hflip))


def fkt_projector(feature_dim: int, hidden: int | None = None, out: int | None = None) -> nn.Sequential:
    """g: Linear(D, hidden) -> ReLU -> Linear(hidden, out), no BN (``src/joint_train.py``).

    The code's 512 -> 1024 -> 128 is kept for backbones of 512 or more features (ResNet-50: 2048 -> 1024 -> 128)
    and shrunk in proportion for narrower ones (a 128-d convnet gets 128 -> 256 -> 32)."""
    ref_in, ref_hidden, ref_out = PROJECTOR_REFERENCE
    scale = min(1.0, feature_dim / ref_in)
    hidden = hidden or max(8, round(ref_hidden * scale))
    out = out or max(8, round(ref_out * scale))
    return mlp([feature_dim, hidden, out], batch_norm=False)


def fkt_simclr(backbone: Backbone, image_size: int = 32, stats=augment.FKT_CODE_STATS, temperature: float = 0.5,
               similarity: str = "cosine", proj_hidden: int | None = None, proj_out: int | None = None,
               color_jitter: bool = False, hflip: bool = False, views=None) -> SimCLR:
    """FKT's self-supervised branch: :class:`SimCLR` (NT-Xent, Chen et al. 2020, arXiv 2002.05709) with FKT's
    projector g (:func:`fkt_projector`, widths ``proj_hidden``/``proj_out``), ``temperature`` (0.5, the code),
    ``similarity`` (``"cosine"``, the paper; ``"dot"``, the code's raw dot product) and views
    (:func:`fkt_view_pipeline`, or ``views``). FKT's joint loss and RT's pre-training both use it::

        z = g(f(v)) for the 2B views,   l_i = -log( exp(s_i,pos(i) / tau) / sum_{k != i} exp(s_ik / tau) ),
        NT-Xent = (1 / 2B) sum_i l_i,   s = cosine (similarity="cosine") or the raw dot product ("dot")
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_choice("similarity", similarity, SIMILARITIES)
    views = views if views is not None else fkt_view_pipeline(image_size, stats, color_jitter, hflip)
    return SimCLR(backbone, temperature=temperature, normalize=similarity == "cosine", image_size=image_size,
                  stats=stats, views=views, projector=fkt_projector(backbone.feature_dim, proj_hidden, proj_out))


class FKT(Wrapper):
    """Joint training: ``L = CE + ssl_weight * NT-Xent`` through one backbone, a linear classifier and a projector.
    The NT-Xent term is the loss of ``base``, a :class:`SimCLR` built by :func:`fkt_simclr` on the same backbone;
    FKT adds the classifier's cross-entropy.

    Args:
        backbone: shared encoder f.
        num_classes: C of the linear classifier (Linear(D, C), as the code).
        image_size, stats: view size and the (mean, std) that normalise views and clean images. The code
            normalises every dataset with fundus statistics (``augment.FKT_CODE_STATS``); ``create(...,
            dataset=name)`` passes the dataset's own.
        ssl_weight: lambda (1 in the code: a plain sum). 0 keeps the SSL branch running but removes its gradient.
        temperature: tau of NT-Xent (0.5, the code).
        similarity: ``"cosine"`` (the paper's formula, our default) or ``"dot"`` (the raw dot product
            ``features @ features.T`` of the released code, no L2 normalisation).
        classifier_input: ``"clean"`` (the code: the un-augmented image, one extra forward pass) or
            ``"augmented"`` (the classifier reads the features of SSL view 1; no extra pass).
        proj_hidden, proj_out: projector widths (default: :func:`fkt_projector`).
        color_jitter, hflip: restore the two augmentations the code defines but never applies
            (``augment.fkt_views``); ``views`` replaces the whole view pipeline.

    ``step`` returns ``loss`` (the joint loss), ``ce``, ``ssl`` (the NT-Xent term) and ``acc`` (training accuracy
    of the batch), scalars only (notebook 02 tabulates them).
    """

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 32, stats=augment.FKT_CODE_STATS,
                 ssl_weight: float = 1.0, temperature: float = 0.5, similarity: str = "cosine",
                 classifier_input: str = "clean", proj_hidden: int | None = None, proj_out: int | None = None,
                 color_jitter: bool = False, hflip: bool = False, views=None):
        super().__init__()
        if num_classes is None or num_classes < 2:
            raise ValueError(f"fkt needs num_classes >= 2, got {num_classes}")
        if not ssl_weight >= 0:
            raise ValueError(f"ssl_weight (lambda) must be >= 0, got {ssl_weight}")
        check_choice("classifier_input", classifier_input, CLASSIFIER_INPUTS)
        self.num_classes = num_classes
        self.ssl_weight, self.classifier_input = float(ssl_weight), classifier_input
        self.classifier = nn.Linear(backbone.feature_dim, num_classes)  # drawn before the projector
        self.base = fkt_simclr(backbone, image_size, stats, float(temperature), similarity, proj_hidden, proj_out,
                               color_jitter, hflip, views)

    # FKT's SSL settings are its SimCLR branch's, stored there once.
    @property
    def projector(self) -> nn.Module:
        return self.base.projector

    @property
    def temperature(self) -> float:
        return self.base.temperature

    @property
    def similarity(self) -> str:
        return "cosine" if self.base.normalize else "dot"

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.base.step(batch)  # NT-Xent of the two SSL views, computed by SimCLR itself
        ssl = out["loss"]
        if self.classifier_input == "clean":
            x = self.eval_transform(batch.images).contiguous(memory_format=self.memory_format)
            logits = self.classifier(self.backbone(x))
        else:
            logits = self.classifier(out["feats"][0])
        ce = F.cross_entropy(logits, batch.labels)
        return {"loss": ce + self.ssl_weight * ssl, "ce": ce.detach(), "ssl": ssl.detach(),
                "acc": (logits.argmax(1) == batch.labels).float().mean()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalized (B, 3, H, W) -> (B, num_classes) logits."""
        return self.classifier(self.backbone(x))


__all__ = ["SIMILARITIES", "CLASSIFIER_INPUTS", "PROJECTOR_REFERENCE", "FullPrecisionViews", "fkt_view_pipeline",
           "fkt_projector", "fkt_simclr", "FKT"]
