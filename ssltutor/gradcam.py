"""Grad-CAM (Selvaraju et al., ICCV 2017, arXiv 1610.02391): where in the image a classifier looks.

For a class c and the feature map A (K channels) of a backbone stage::

    alpha_k = mean over (i, j) of d y_c / d A_k(i, j)         (the gradient, global-average pooled)
    map     = ReLU( sum_k alpha_k A_k )                      (upsampled to the image, scaled to [0, 1])

FKT's qualitative figure (arXiv 2304.01354) shows such maps for an Intel "buildings" and an APTOS "mild DR" image.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn


def grad_cam(backbone: nn.Module, classifier: nn.Module, images: torch.Tensor, target_class=None,
             stage: int = -1) -> torch.Tensor:
    """Grad-CAM maps of ``classifier(backbone(images))`` at ``backbone.stages[stage]``.

    Args:
        backbone: a :class:`ssltutor.models.Backbone` (anything with ``stages`` and ``forward``).
        classifier: maps pooled features (B, D) to logits (B, C) (a Linear or an MLP head).
        images: normalized float (B, 3, H, W) on the model's device.
        target_class: None (the predicted class), an int (one class for all) or (B,) ints.
        stage: which stage's output to explain (-1: the last, the usual choice).

    Returns:
        float (B, H, W) on the images' device, each map scaled to [0, 1] (all zeros where no location has a
        positive contribution). The model's parameters get no gradients and its train/eval mode is restored.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    stages = getattr(backbone, "stages", None)
    if stages is None or not -len(stages) <= stage < len(stages):
        count = 0 if stages is None else len(stages)
        raise ValueError(f"stage must index backbone.stages ({count} stages), got {stage}")
    captured: list[torch.Tensor] = []
    hook = stages[stage].register_forward_hook(lambda module, inputs, output: captured.append(output))
    modes = (backbone.training, classifier.training)
    backbone.eval(), classifier.eval()
    try:
        with torch.enable_grad():
            x = images.detach().float().requires_grad_(True)  # a graph even when the weights are frozen
            logits = classifier(backbone(x))
            if target_class is None:
                target = logits.argmax(1)
            else:
                target = torch.as_tensor(target_class, device=logits.device).long().expand(len(logits))
                if int(target.min()) < 0 or int(target.max()) >= logits.shape[1]:
                    raise ValueError(f"target_class must lie in [0, {logits.shape[1]}), got {target_class}")
            score = logits.gather(1, target.view(-1, 1)).sum()
            activation = captured[-1]
            (grad,) = torch.autograd.grad(score, activation)
    finally:
        hook.remove()
        backbone.train(modes[0]), classifier.train(modes[1])
    weights = grad.mean(dim=(2, 3), keepdim=True)                          # alpha_k, (B, K, 1, 1)
    cam = F.relu((weights * activation.detach()).sum(1, keepdim=True))     # (B, 1, h, w)
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam)).clamp_(0, 1)


def plot_grad_cam(images: torch.Tensor, maps: dict[str, torch.Tensor], captions: Sequence[str] | None = None,
                  alpha: float = 0.5, cmap: str = "jet", title: str | None = None) -> Figure:
    """One row per image: the image, then its Grad-CAM overlay for each model in ``maps``.

    Args:
        images: uint8 (B, 3, H, W) (what the reader should see, not normalized).
        maps: {model name: (B, H', W') maps in [0, 1]} (resized to the image if needed).
        captions: one per image (e.g. "buildings, predicted street").
    """
    pictures = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    if pictures.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype}")
    B, H, W = pictures.shape[:3]
    names = list(maps)
    fig, axes = plt.subplots(B, 1 + len(names), figsize=(2.0 * (1 + len(names)), 2.0 * B + 0.4), squeeze=False)
    for i in range(B):
        axes[i, 0].imshow(pictures[i])
        axes[i, 0].set_xlabel(captions[i] if captions else "", fontsize="small")
        for j, name in enumerate(names, start=1):
            m = maps[name][i].detach().float().cpu()
            if m.shape != (H, W):
                m = F.interpolate(m[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
            axes[i, j].imshow(pictures[i])
            axes[i, j].imshow(m.numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(["image", *names][j], fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
