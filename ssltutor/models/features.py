"""Features of a frozen network for a whole uint8 image tensor: what evaluation, the probes and every method's
``features`` share (here, below the methods, so that a method never imports the evaluation layer)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def module_device(module: nn.Module) -> torch.device:
    """The device of the first parameter (else buffer) of ``module``; the CPU when it has neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: Tensor,
    transform: Callable[[Tensor, torch.Generator | None], Tensor] | None = None,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> Tensor:
    """Pooled features of a frozen backbone for a whole image tensor.

    Args:
        backbone: maps a float batch ``(B, 3, H, W)`` to features ``(B, D)``; it is put in eval mode (BatchNorm
            uses running statistics) and its previous train/eval mode is restored afterwards.
        images: uint8 ``(N, 3, H, W)`` on any device (e.g. ``ImageDataset.images``).
        transform: maps a uint8 batch to the normalized float input, called as ``transform(batch, None)``
            (e.g. ``ssltutor.data.augment.eval_transform(size, mean, std)``). ``None``: ``batch.float() / 255``.
        batch_size: images per forward pass.
        device: where to run; default: the device of the backbone's parameters.

    Returns:
        float32 ``(N, D)`` on ``device``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else module_device(backbone)
    was_training = backbone.training
    backbone.eval()
    try:
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            x = transform(batch, None) if transform is not None else batch.float().div_(255)
            chunks.append(backbone(x).float().flatten(1))
    finally:
        backbone.train(was_training)
    if not chunks:
        raise ValueError("images is empty: nothing to extract")
    return torch.cat(chunks)


__all__ = ["module_device", "extract_features"]
