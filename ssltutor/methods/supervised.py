"""Supervised training: a linear classifier on the backbone, cross-entropy on the labels (the baseline of every
paper)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import augment
from .base import Batch, Method


class Supervised(Method):
    """L = CE(W f(x), y). ``augment``: ``"crop_flip"`` (random resized crop scale (0.35, 1) + horizontal flip,
    the standard recipe for small images), ``"simclr"`` (SimCLR's strong view) or ``"none"``."""

    def __init__(self, backbone, num_classes: int, image_size: int = 32, stats=augment.IMAGENET_STATS,
                 augment_views: str = "crop_flip", label_smoothing: float = 0.0):
        super().__init__(backbone, image_size, stats)
        if num_classes is None or num_classes < 2:
            raise ValueError(f"supervised needs num_classes >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.feature_dim, num_classes)
        self.label_smoothing = label_smoothing
        self.views = augment.supervised_views(image_size, *stats, recipe=augment_views)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        (x,) = self.make_views(batch)
        logits = self.classifier(self.backbone(x))
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        return {"loss": loss, "acc": (logits.argmax(1) == batch.labels).float().mean()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalized (B, 3, H, W) -> (B, num_classes) logits."""
        return self.classifier(self.backbone(x))
