"""Batches straight from tensors that already live on the device: no Dataset, no workers, no collate.

The whole split sits on the device as uint8 (airbench style); an epoch is one permutation drawn on the device and a
sequence of index-selects. Augmentation happens afterwards, batched, in ``ssltutor.data.augment``.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Iterate over (images, labels) mini-batches of tensors kept on one device.

    images: uint8 (N, 3, H, W) (any dtype works); labels: (N,) or None. Both are moved to ``device`` once
    (default: the images' device). Each ``iter()`` is one epoch: with ``shuffle`` a fresh permutation is drawn with
    ``generator`` (on the generator's device, so a CUDA generator keeps the draw on the GPU); otherwise the order
    is 0..N-1. ``drop_last`` skips the final incomplete batch, so every step sees ``batch_size`` samples.
    Yields (images (B, 3, H, W), labels (B,) or None) on ``device``. ``len()`` is the number of batches per epoch.
    """

    def __init__(self, images: Tensor, labels: Tensor | None, batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, generator: torch.Generator | None = None, device=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> Tensor:
        n = len(self.images)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        draw_on = self.generator.device if self.generator is not None else self.device
        return torch.randperm(n, generator=self.generator, device=draw_on).to(self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        order = self._order()
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            labels = self.labels.index_select(0, index) if self.labels is not None else None
            yield self.images.index_select(0, index), labels
