"""Batched, on-device image augmentations and the view pipelines of the five papers.

Every op takes a whole batch ``x: (B, 3, H, W)`` float in [0, 1] on any device and draws one set of parameters per
sample from a ``torch.Generator`` (no Python loop over samples). Each op comes in three forms:

* ``<op>_params(batch_size, ..., generator)`` draws the per-sample parameters,
* ``apply_<op>(x, params, ...)`` applies explicit parameters (the tests compare it with
  ``torchvision.transforms.v2.functional`` applied sample by sample with the same parameters),
* ``<op>(x, ..., generator)`` (``random_resized_crop``, ``horizontal_flip``, ...) does both.

Parameters are drawn on the generator's device and moved to the batch's device, so one seed gives the same views
on every run of the same device. ``generator=None`` uses the global generator of the batch's device.

The view pipelines (:class:`ViewTransform`, :class:`MultiView`, :func:`simclr_views`, :func:`byol_views`,
:func:`fkt_views`, :func:`eval_transform`) take uint8 batches, compute in float32 and cast once at the end to the
requested ``dtype`` (float32 or bfloat16) and ``memory_format``. A pipeline folds the crop, both flips and the
quarter turns into the sampling grid of one ``grid_sample`` call: mirroring or rotating the sampling coordinates
gives exactly the flipped or rotated crop, and the colour ops and the (isotropic, reflect-padded) blur commute with
flips and quarter turns, so the result equals running the ops one after the other.

>>> g = torch.Generator().manual_seed(0)
>>> views = simclr_views(32, *STATS["cifar10"])
>>> v1, v2 = views(images_uint8, g)            # two (B, 3, 32, 32) float32 views, normalized
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------------------------------
# Dataset statistics (mean, std) per channel in [0, 1] units
# ------------------------------------------------------------------------------------------------------------------

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The FKT code normalises every dataset with these fundus-like values (a quirk of the FKT code's src/joint_train.py).
FKT_CODE_STATS = ((0.4258, 0.2974, 0.2129), (0.2767, 0.2024, 0.1686))

STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # Well-known per-pixel statistics of the full training sets. (The often copied CIFAR-10 std
    # (0.2023, 0.1994, 0.2010) is the mean of per-image stds, not the per-pixel std.)
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # Computed here on all 1,797 scikit-learn digits as ssltutor.data loads them (gray 0..16 scaled to [0, 1],
    # bilinear upsampling 8 -> 32 px, three equal channels). The std is that of the 32 px images.
    "digits": ((0.3053, 0.3053, 0.3053), (0.3236, 0.3236, 0.3236)),
    # Computed on the 1,200-image seg_train subset in shared/data (resized to 64 px); no published values exist.
    "intel_image": ((0.4304, 0.4572, 0.4525), (0.2461, 0.2444, 0.2781)),
    # Computed on the 400-image 224 px subset in shared/data (resized to 64 px): fundus photos are red-dominated
    # with black corners, hence the low blue mean. Treat as approximate for the full Kaggle set.
    "aptos2019": ((0.4238, 0.2219, 0.0722), (0.2566, 0.1374, 0.0689)),
    "imagenet": IMAGENET_STATS,
}

# ------------------------------------------------------------------------------------------------------------------
# Argument checks: every error names the argument, the allowed values and what was given
# ------------------------------------------------------------------------------------------------------------------


def _check_probability(name: str, p: float) -> None:
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_nonnegative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not value >= 0.0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _check_interval(name: str, interval: Sequence[float], low: float, high: float) -> None:
    """``interval = (lo, hi)`` with ``low < lo <= hi <= high``."""
    ok = isinstance(interval, (tuple, list)) and len(interval) == 2
    if not ok or not low < interval[0] <= interval[1] <= high:
        raise ValueError(f"{name} must be (min, max) with {low} < min <= max <= {high}, got {interval!r}")


def _check_size(name: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"{name} must be a positive int (pixels), got {size!r}")


def _check_kernel_size(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}")


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor (B, 3, H, W) in [0, 1] (use to_float for uint8), got {got}")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")


# ------------------------------------------------------------------------------------------------------------------
# Random numbers and small helpers
# ------------------------------------------------------------------------------------------------------------------


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) float32 drawn on the generator's device, returned on ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device, non_blocking=True)


def _device(generator: torch.Generator | None, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def _rows(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of a (B,) mask."""
    return mask.nonzero().squeeze(1)


def _update_rows_(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """In place: replace the samples where ``mask`` (B,) is True by ``fn`` of them (called once, as a batch).
    Indexing, not ``torch.where``: on CPU a where over the whole batch costs ~10x a copy of the selected rows."""
    rows = _rows(mask.to(x.device))
    if rows.numel():
        x[rows] = fn(x[rows]).to(x.dtype)  # under autocast a conv (blur) returns bf16
    return x


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast over images."""
    return values.view(-1, 1, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) ITU-R 601 luma, torchvision's weights (0.2989, 0.587, 0.114)."""
    r, g, b = x.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) in 0..255 -> ``dtype`` in [0, 1] (like ``v2.functional.to_dtype(scale=True)``).
    Float input is only cast to ``dtype``."""
    if images.is_floating_point():
        return images.to(dtype)
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1], got {images.dtype}")
    return images.to(dtype).mul_(1.0 / 255)


# ------------------------------------------------------------------------------------------------------------------
# Bernoulli parameters: flips, grayscale, solarize
# ------------------------------------------------------------------------------------------------------------------


def bernoulli_params(batch_size: int, p: float, generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """(B,) bool mask, each True with probability ``p``: the parameters of the flips, grayscale and solarize."""
    _check_batch_size(batch_size)
    _check_probability("p", p)
    return _rand(batch_size, generator, _device(generator, device)) < p


# ------------------------------------------------------------------------------------------------------------------
# Random resized crop (with flips and quarter turns folded into the sampling grid)
# ------------------------------------------------------------------------------------------------------------------


def resized_crop_params(batch_size: int, height: int, width: int, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), generator: torch.Generator | None = None,
                        device=None) -> torch.Tensor:
    """Crop boxes of ``RandomResizedCrop``: (B, 4) int64 ``[top, left, height, width]`` in pixels.

    Same rule as torchvision, vectorised: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), up to 10
    attempts per sample (the first that fits wins), else the central crop clipped to ``ratio``.
    """
    _check_batch_size(batch_size)
    _check_size("height", height)
    _check_size("width", width)
    _check_interval("scale", scale, 0.0, 1.0)
    _check_interval("ratio", ratio, 0.0, math.inf)
    device = _device(generator, device)
    u = _rand((batch_size, 10, 2), generator, device)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(1, keepdim=True)  # index of the first attempt that fits (0 if none does)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # Fallback: central crop with the image's aspect ratio clipped into `ratio`.
    in_ratio = width / height
    fw, fh = width, height
    if in_ratio < min(ratio):
        fh = int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw = int(round(height * max(ratio)))
    found = fits.any(1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    u = _rand((batch_size, 2), generator, device)
    top = torch.minimum((u[:, 0] * (height - h + 1)).floor(), height - h)  # min: guards float rounding of u*n
    left = torch.minimum((u[:, 1] * (width - w + 1)).floor(), width - w)
    top = torch.where(found, top, (height - h).div(2, rounding_mode="floor"))
    left = torch.where(found, left, (width - w).div(2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], 1).long()


def _sample_coordinates(start: torch.Tensor, length: torch.Tensor, size: int, full: int) -> torch.Tensor:
    """Normalized ``grid_sample`` coordinates (align_corners=False) of ``size`` output pixels spanning the crop
    ``[start, start + length)`` of an axis with ``full`` pixels: (B, size).

    Pixel centres map like ``F.interpolate(mode="bilinear", align_corners=False)``: source = (j + 0.5) * length /
    size - 0.5, clamped into the crop (interpolate clamps at the crop's edge, grid_sample would read outside it).
    """
    j = torch.arange(size, device=start.device, dtype=torch.float32) + 0.5
    source = j * (length / size).unsqueeze(1) - 0.5
    source = torch.minimum(source.clamp_(min=0), (length - 1).unsqueeze(1)) + start.unsqueeze(1)
    return source.mul_(2.0 / full).add_(1.0 / full - 1.0)


def apply_resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int, hflip: torch.Tensor | None = None,
                       vflip: torch.Tensor | None = None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Crop ``boxes`` (B, 4) ``[top, left, height, width]`` of x (B, 3, H, W) and resize each to (size, size)
    with bilinear interpolation, in one ``grid_sample`` call.

    Equals ``v2.functional.resized_crop(x[b], *boxes[b], [size, size], antialias=False)`` per sample (max abs
    difference ~1e-6: same pixel-centre convention and edge clamping; no antialiasing, so crops much larger than
    ``size`` alias. The loaders store images at about the view size, so crops shrink by at most ~2x.)

    Optional (B,) masks/labels fold more geometry into the same grid, exactly:
    ``hflip``/``vflip`` (bool) flip the crop, ``rotation`` (int 0..3) then turns it by ``k`` quarter turns like
    ``torch.rot90(crop, k, dims=(1, 2))``.
    """
    _check_images(x)
    _check_size("size", size)
    batch, _, height, width = x.shape
    if boxes.shape != (batch, 4):
        raise ValueError(f"boxes must be (B, 4) [top, left, height, width] with B={batch}, got {tuple(boxes.shape)}")
    boxes = boxes.to(x.device, torch.float32)
    gx = _sample_coordinates(boxes[:, 1], boxes[:, 3], size, width)   # along output columns
    gy = _sample_coordinates(boxes[:, 0], boxes[:, 2], size, height)  # along output rows
    if hflip is not None:
        gx = torch.where(hflip.view(-1, 1), gx.flip(1), gx)
    if vflip is not None:
        gy = torch.where(vflip.view(-1, 1), gy.flip(1), gy)
    if rotation is None:
        grid = torch.stack([gx.unsqueeze(1).expand(-1, size, -1), gy.unsqueeze(2).expand(-1, -1, size)], -1)
    else:
        # rot90 by k: out[i, j] = crop[j, S-1-i] (k=1), crop[S-1-i, S-1-j] (k=2), crop[S-1-j, i] (k=3).
        k = rotation.to(x.device).view(-1, 1)
        gx = torch.where((k == 1) | (k == 2), gx.flip(1), gx)
        gy = torch.where(k >= 2, gy.flip(1), gy)
        odd = (k % 2 == 1).view(-1, 1, 1)
        grid_x = torch.where(odd, gx.unsqueeze(2), gx.unsqueeze(1))  # odd k: x varies along output rows
        grid_y = torch.where(odd, gy.unsqueeze(1), gy.unsqueeze(2))
        grid = torch.stack([grid_x, grid_y], -1)
    # Sample in float32 at least: bfloat16 grid coordinates would be off by up to ~0.5 px at 224 px.
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = F.grid_sample(work, grid.to(work.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(x.dtype)


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomResizedCrop(size, scale, ratio, antialias=False)`` per sample: (B, 3, H, W) -> (B, 3, size, size)."""
    _check_images(x)
    _check_size("size", size)
    boxes = resized_crop_params(x.shape[0], x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return apply_resized_crop(x, boxes, size)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to (size, size) with antialiasing (``v2.functional.resize(x, [size, size])``);
    a no-op when x already has that size."""
    _check_images(x)
    _check_size("size", size)
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


# ------------------------------------------------------------------------------------------------------------------
# Flips
# ------------------------------------------------------------------------------------------------------------------


def apply_horizontal_flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where ``mask`` (B,) is True."""
    _check_images(x)
    return _update_rows_(x.clone(), mask, lambda y: y.flip(-1))


def apply_vertical_flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom the samples where ``mask`` (B,) is True."""
    _check_images(x)
    return _update_rows_(x.clone(), mask, lambda y: y.flip(-2))


def horizontal_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomHorizontalFlip(p)`` per sample."""
    _check_images(x)
    return apply_horizontal_flip(x, bernoulli_params(x.shape[0], p, generator, x.device))


def vertical_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomVerticalFlip(p)`` per sample."""
    _check_images(x)
    return apply_vertical_flip(x, bernoulli_params(x.shape[0], p, generator, x.device))


# ------------------------------------------------------------------------------------------------------------------
# Colour jitter
# ------------------------------------------------------------------------------------------------------------------

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # op ids, torchvision ColorJitter's fn_idx


class ColorJitterParams(NamedTuple):
    """Per-sample colour jitter parameters.

    apply: (B,) bool, jitter this sample at all (``RandomApply`` p);
    factors: (B, 4) float [brightness, contrast, saturation, hue] factors (1, 1, 1, 0 = unchanged);
    order: (B, 4) int64, a permutation of the op ids 0..3 (brightness, contrast, saturation, hue) in the order they
    run, like torchvision's ``fn_idx = torch.randperm(4)``.
    """

    apply: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor


def color_jitter_params(batch_size: int, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                        hue: float = 0.1, p: float = 0.8, generator: torch.Generator | None = None,
                        device=None) -> ColorJitterParams:
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` parameters: factors
    ~ U(max(0, 1 - s), 1 + s) for brightness, contrast and saturation, hue shift ~ U(-hue, hue), a uniformly
    random order of the four ops per sample."""
    _check_batch_size(batch_size)
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        _check_nonnegative(name, value)
    if not isinstance(hue, (int, float)) or not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must be a number in [0, 0.5] (fraction of the colour wheel), got {hue!r}")
    _check_probability("p", p)
    device = _device(generator, device)
    u = _rand((batch_size, 9), generator, device)
    low = torch.tensor([max(0.0, 1 - brightness), max(0.0, 1 - contrast), max(0.0, 1 - saturation), -hue],
                       device=device)
    high = torch.tensor([1 + brightness, 1 + contrast, 1 + saturation, hue], device=device)
    factors = low + (high - low) * u[:, 1:5]
    return ColorJitterParams(u[:, 0] < p, factors, u[:, 5:9].argsort(1))


def _blend_(x: torch.Tensor, op: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """In place: one position of the jitter order for all samples at once. Brightness, contrast and saturation
    are all torchvision's ``_blend``: ``clamp(f * x + (1 - f) * other, 0, 1)`` with other = 0, the mean luma or
    the luma. Samples whose op here is hue get f = 1, which leaves them unchanged exactly.

    Selections are per-sample 0/1 weights, not ``torch.where``: on CPU a where over a random mask is ~20x slower
    than a multiply."""
    f = factors.gather(1, op.clamp(max=SATURATION).unsqueeze(1)).squeeze(1)
    f = torch.where(op == HUE, torch.ones_like(f), f)
    w = (op != BRIGHTNESS) * (1 - f)  # weight of `other`
    is_contrast = (op == CONTRAST).to(x.dtype)
    gray = _luma(x)
    mean = gray.mean((2, 3), keepdim=True)
    other = torch.addcmul(mean * _per_sample(is_contrast * w), gray, _per_sample((1 - is_contrast) * w), out=gray)
    return torch.addcmul(other, x, _per_sample(f), out=x).clamp_(0, 1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each sample of x (n, 3, H, W) by ``shift`` (n,) turns, keeping HSV saturation and value.

    Same result as torchvision's RGB -> HSV -> (h + shift) mod 1 -> RGB, in closed form: with hue h in sixths of
    a turn, ``channel_c = max - (max - min) * clamp(min(k, 4 - k), 0, 1)``, ``k = (c + h) mod 6``, c = 5, 3, 1
    for R, G, B; rewritten as ``(min - spread) + spread * clamp(|k - 2|, 1, 2)``, spread = max - min. The
    trapezoid is continuous and 6-periodic, so a mod computed as k - 6 floor(k / 6) is exact enough."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    spread = maxc - minc
    # torchvision's sector rule: red is the max if it ties, then green. 0/1 weights (no torch.where, see _blend_).
    red = (maxc == r).to(x.dtype)
    green = (maxc == g).to(x.dtype).mul_(1 - red)
    blue = 1 - red - green
    num = (g - b).mul_(red).addcmul_(b - r, green).addcmul_(r - g, blue)  # spread * hue position in the sector
    start = (2 * green).add_(blue, alpha=4).add_(shift.view(-1, 1, 1) * 6)  # sector start + shift, in sixths
    hue = num.div_(spread.clamp(min=1e-12)).add_(start)  # gray pixels: num = spread = 0, any hue works
    channel = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = hue.unsqueeze(1) + channel
    k = k.sub_(torch.floor(k * (1 / 6)).mul_(6))
    t = k.sub_(2).abs_().clamp_(1, 2)
    return torch.addcmul((minc - spread).unsqueeze(1), spread.unsqueeze(1), t, out=t)


def _color_jitter_(x: torch.Tensor, params: ColorJitterParams) -> torch.Tensor:
    """In place on float32 x. Samples without ``apply`` get the identity factors (1, 1, 1, 0)."""
    apply = params.apply.to(x.device)
    if not bool(apply.any()):
        return x
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0], device=x.device)
    factors = torch.where(apply.unsqueeze(1), params.factors.to(x.device, torch.float32), identity)
    order = params.order.to(x.device)
    for position in range(4):
        op = order[:, position]
        _blend_(x, op, factors)
        rows = _rows((op == HUE) & (factors[:, HUE] != 0))
        if rows.numel():
            x[rows] = _shift_hue(x[rows], factors[rows, HUE])
    return x


def _float32_copy(x: torch.Tensor) -> torch.Tensor:
    """A float32 copy to work on in place (bfloat16's 8-bit mantissa is too coarse for chained colour maths)."""
    return x.float() if x.dtype != torch.float32 else x.clone()


def apply_color_jitter(x: torch.Tensor, params: ColorJitterParams) -> torch.Tensor:
    """Colour jitter with explicit parameters: for each sample with ``apply``, run brightness, contrast,
    saturation and hue adjustment (``v2.functional.adjust_*``) in that sample's ``order``.

    Each of the four positions is one blend pass over the batch plus a hue rotation of the samples whose op there
    is hue (a hue factor of exactly 0 is skipped, as torchvision skips ``hue=0``). Computed in float32, returned
    in x's dtype."""
    _check_images(x)
    return _color_jitter_(_float32_copy(x), params).to(x.dtype)


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, p: float = 0.8, generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` per sample."""
    _check_images(x)
    params = color_jitter_params(x.shape[0], brightness, contrast, saturation, hue, p, generator, x.device)
    return apply_color_jitter(x, params)


# ------------------------------------------------------------------------------------------------------------------
# Grayscale
# ------------------------------------------------------------------------------------------------------------------


def _grayscale_(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _update_rows_(x, mask, lambda y: _luma(y).expand(-1, 3, -1, -1))


def apply_grayscale(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace the samples where ``mask`` (B,) is True by their luma on all three channels
    (``v2.functional.rgb_to_grayscale(x, num_output_channels=3)``)."""
    _check_images(x)
    return _grayscale_(x.clone(), mask)


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomGrayscale(p)`` per sample."""
    _check_images(x)
    return apply_grayscale(x, bernoulli_params(x.shape[0], p, generator, x.device))


# ------------------------------------------------------------------------------------------------------------------
# Gaussian blur
# ------------------------------------------------------------------------------------------------------------------


class BlurParams(NamedTuple):
    """apply: (B,) bool, blur this sample; sigma: (B,) float standard deviation in pixels (both axes)."""

    apply: torch.Tensor
    sigma: torch.Tensor


def gaussian_blur_params(batch_size: int, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5,
                         generator: torch.Generator | None = None, device=None) -> BlurParams:
    """``RandomApply([GaussianBlur(kernel_size, sigma)], p)`` parameters: sigma ~ U(sigma)."""
    _check_batch_size(batch_size)
    _check_interval("sigma", sigma, 0.0, math.inf)
    _check_probability("p", p)
    u = _rand((batch_size, 2), generator, _device(generator, device))
    return BlurParams(u[:, 0] < p, sigma[0] + (sigma[1] - sigma[0]) * u[:, 1])


def _blur_batch(y: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each sample of y (n, C, H, W) with its own sigma (n,): reflect padding, then two depthwise
    convolutions (1 x k, then k x 1: the 2-D Gaussian is separable) with the batch folded into the channels."""
    n, c, h, w = y.shape
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=y.device, dtype=torch.float32) - half
    kernel = torch.softmax(-0.5 * (t / sigma.to(y.device, torch.float32).unsqueeze(1)) ** 2, dim=1)  # (n, k)
    kernel = kernel.to(y.dtype).repeat_interleave(c, dim=0)  # one kernel per (sample, channel)
    y = F.pad(y, (half, half, half, half), mode="reflect").view(1, n * c, h + 2 * half, w + 2 * half)
    y = F.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)


def _gaussian_blur_(x: torch.Tensor, params: BlurParams, kernel_size: int) -> torch.Tensor:
    if kernel_size // 2 >= min(x.shape[-2:]):
        raise ValueError(f"kernel_size // 2 must be smaller than the image side {min(x.shape[-2:])} (reflect "
                         f"padding), got kernel_size={kernel_size}")
    if kernel_size == 1:
        return x
    sigma = params.sigma.to(x.device)[params.apply.to(x.device)]  # same order as the selected rows
    return _update_rows_(x, params.apply, lambda y: _blur_batch(y, sigma, kernel_size))


def apply_gaussian_blur(x: torch.Tensor, params: BlurParams, kernel_size: int) -> torch.Tensor:
    """Gaussian blur of the selected samples with their own sigma
    (``v2.functional.gaussian_blur(x[b], [k, k], [sigma_b, sigma_b])``: reflect padding, kernel
    exp(-t^2 / (2 sigma^2)) normalised, t = -(k-1)/2 .. (k-1)/2), as two depthwise convolutions with one kernel
    per (sample, channel)."""
    _check_images(x)
    _check_kernel_size(kernel_size)
    return _gaussian_blur_(x.clone(), params, kernel_size)


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomApply([GaussianBlur(kernel_size, sigma)], p)`` per sample."""
    _check_images(x)
    _check_kernel_size(kernel_size)
    return apply_gaussian_blur(x, gaussian_blur_params(x.shape[0], sigma, p, generator, x.device), kernel_size)


def blur_kernel_size(size: int, fraction: float = 0.1) -> int:
    """Odd kernel side of about ``fraction * size`` (at least 3): SimCLR's 10 % gives 23 at 224 px, 3 at 32 px."""
    _check_size("size", size)
    return max(3, 2 * int(fraction * size / 2) + 1)


# ------------------------------------------------------------------------------------------------------------------
# Solarize
# ------------------------------------------------------------------------------------------------------------------


def _check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")


def _solarize_(x: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    return _update_rows_(x, mask, lambda y: torch.where(y >= threshold, 1 - y, y))


def apply_solarize(x: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert (1 - x) the pixels >= ``threshold`` of the samples where ``mask`` (B,) is True
    (``v2.functional.solarize``)."""
    _check_images(x)
    _check_threshold(threshold)
    return _solarize_(x.clone(), mask, threshold)


def solarize(x: torch.Tensor, threshold: float = 0.5, p: float = 0.2,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomSolarize(threshold, p)`` per sample."""
    _check_images(x)
    return apply_solarize(x, bernoulli_params(x.shape[0], p, generator, x.device), threshold)


# ------------------------------------------------------------------------------------------------------------------
# Rotation by quarter turns (the labels of the rotation pretext task)
# ------------------------------------------------------------------------------------------------------------------


def rotate90_params(batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(B,) int64 uniform in {0, 1, 2, 3}: quarter turns counter-clockwise."""
    _check_batch_size(batch_size)
    device = _device(generator, device)
    source = generator.device if generator is not None else device
    return torch.randint(0, 4, (batch_size,), generator=generator, device=source).to(device)


def apply_rotate90(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Turn sample b by ``k[b]`` quarter turns: ``torch.rot90(x[b], k[b], dims=(1, 2))``. Square images only."""
    _check_images(x)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must hold square images to rotate by 90 degrees, got {tuple(x.shape[-2:])}")
    k = k.to(x.device)
    out = x.clone()
    for turns in (1, 2, 3):  # three groups, not a loop over samples
        _update_rows_(out, k == turns, partial(torch.rot90, k=turns, dims=(2, 3)))
    return out


def rotate90(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each sample by a uniformly random number of quarter turns. Returns (rotated, labels), labels (B,)
    int64 in {0, 1, 2, 3} = k of ``torch.rot90(image, k, dims=(1, 2))``."""
    _check_images(x)
    k = rotate90_params(x.shape[0], generator, x.device)
    return apply_rotate90(x, k), k


# ------------------------------------------------------------------------------------------------------------------
# Normalize
# ------------------------------------------------------------------------------------------------------------------


def _channel_stats(mean: Sequence[float], std: Sequence[float], device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    if mean_t.shape != (3,) or std_t.shape != (3,):
        raise ValueError(f"mean and std must have 3 values (one per channel), got {mean!r} and {std!r}")
    if not bool((std_t > 0).all()):
        raise ValueError(f"std must be > 0 for every channel, got {std!r}")
    return mean_t.to(device, dtype).view(1, 3, 1, 1), std_t.to(device, dtype).view(1, 3, 1, 1)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel (``v2.functional.normalize``)."""
    _check_images(x)
    mean_t, std_t = _channel_stats(mean, std, x.device, x.dtype)
    return (x - mean_t) / std_t


# ------------------------------------------------------------------------------------------------------------------
# View pipelines
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewConfig:
    """One view recipe: which ops run, how strong, with which probability (torchvision's names). The defaults are
    SimCLR's view at strength 0.5 without blur: flip 0.5, jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale 0.2.
    Ops run in this order: crop (or resize) + flips + quarter turn, colour jitter, grayscale, blur, solarize,
    normalize. Build variants with ``dataclasses.replace(config, ...)``.

    size: output side in pixels. crop: RandomResizedCrop(scale, ratio) if True, else a plain resize to ``size``.
    hflip_p / vflip_p: flip probabilities. jitter_p: RandomApply probability of ColorJitter(brightness, contrast,
    saturation, hue). grayscale_p. blur_p, blur_kernel_size (None: :func:`blur_kernel_size` of ``size``),
    blur_sigma. solarize_p, solarize_threshold. rotate90: a uniformly random quarter turn (labels are dropped).
    """

    size: int
    crop: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_kernel_size: int | None = None
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    rotate90: bool = False

    def __post_init__(self) -> None:
        _check_size("size", self.size)
        _check_interval("scale", self.scale, 0.0, 1.0)
        _check_interval("ratio", self.ratio, 0.0, math.inf)
        for name in ("hflip_p", "vflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _check_probability(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            _check_nonnegative(name, getattr(self, name))
        if not isinstance(self.hue, (int, float)) or not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be a number in [0, 0.5], got {self.hue!r}")
        if self.blur_kernel_size is not None:
            _check_kernel_size(self.blur_kernel_size)
        _check_interval("blur_sigma", self.blur_sigma, 0.0, math.inf)
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(f"solarize_threshold must be in [0, 1], got {self.solarize_threshold!r}")

    @classmethod
    def plain(cls, size: int) -> "ViewConfig":
        """No augmentation: resize to ``size`` (if needed) and normalize."""
        return cls(size, crop=False, hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0)


class ViewTransform:
    """One view: ``(images (B, 3, H, W) uint8 or float in [0, 1], generator) -> (B, 3, size, size)`` normalized,
    of ``dtype`` (float32 or bfloat16) and ``memory_format``.

    Computes in float32 and casts once at the end: bfloat16 keeps 8 bits of mantissa, no more than the uint8
    input, and rounding would compound over the ops. Parameters are drawn in a fixed order (crop, flips, turn,
    jitter, grayscale, blur, solarize), skipping ops whose probability is 0, so a seed fixes the views.
    """

    def __init__(self, config: ViewConfig, mean: Sequence[float], std: Sequence[float],
                 dtype: torch.dtype = torch.float32, memory_format: torch.memory_format = torch.contiguous_format):
        if not isinstance(config, ViewConfig):
            raise ValueError(f"config must be a ViewConfig, got {type(config).__name__}")
        if dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            raise ValueError(f"dtype must be a floating dtype (float32 or bfloat16), got {dtype}")
        if memory_format not in (torch.contiguous_format, torch.channels_last):
            raise ValueError(f"memory_format must be torch.contiguous_format or torch.channels_last, "
                             f"got {memory_format}")
        _channel_stats(mean, std, "cpu", torch.float32)  # validates
        self.config, self.mean, self.std = config, tuple(mean), tuple(std)
        self.dtype, self.memory_format = dtype, memory_format
        self._has_jitter = config.jitter_p > 0 and (
            config.brightness > 0 or config.contrast > 0 or config.saturation > 0 or config.hue > 0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float(images)
        _check_images(x)
        return self.apply(x, self.draw(x.shape[0], x.shape[2], x.shape[3], generator, x.device))

    def draw(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
             device=None) -> dict[str, object]:
        """The view's random parameters for ``batch`` images of ``height`` x ``width``, in the fixed order (crop,
        flips, turn, jitter, grayscale, blur, solarize); only the ops this view runs have an entry."""
        cfg, device = self.config, _device(generator, device)
        params: dict[str, object] = {}
        if cfg.crop:
            params["boxes"] = resized_crop_params(batch, height, width, cfg.scale, cfg.ratio, generator, device)
        if cfg.hflip_p > 0:
            params["hflip"] = bernoulli_params(batch, cfg.hflip_p, generator, device)
        if cfg.vflip_p > 0:
            params["vflip"] = bernoulli_params(batch, cfg.vflip_p, generator, device)
        if cfg.rotate90:
            params["turns"] = rotate90_params(batch, generator, device)
        if self._has_jitter:
            params["jitter"] = color_jitter_params(batch, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue,
                                                   cfg.jitter_p, generator, device)
        if cfg.grayscale_p > 0:
            params["grayscale"] = bernoulli_params(batch, cfg.grayscale_p, generator, device)
        if cfg.blur_p > 0:
            params["blur"] = gaussian_blur_params(batch, cfg.blur_sigma, cfg.blur_p, generator, device)
        if cfg.solarize_p > 0:
            params["solarize"] = bernoulli_params(batch, cfg.solarize_p, generator, device)
        return params

    def apply(self, x: torch.Tensor, params: dict[str, object]) -> torch.Tensor:
        """The view of float images x (B, 3, H, W) in [0, 1] with parameters from :meth:`draw` (B rows each)."""
        x = self._geometry(x, params)  # a new float32 tensor: the ops below work on it in place
        x = self._photometry(x, params)
        mean, std = _channel_stats(self.mean, self.std, x.device, torch.float32)
        return x.sub_(mean).div_(std).to(dtype=self.dtype, memory_format=self.memory_format)

    def _geometry(self, x: torch.Tensor, params: dict[str, object]) -> torch.Tensor:
        hflip, vflip, turns = params.get("hflip"), params.get("vflip"), params.get("turns")
        if self.config.crop:
            return apply_resized_crop(x, params["boxes"], self.config.size, hflip, vflip, turns)
        out = resize(x, self.config.size)
        out = apply_horizontal_flip(out, hflip) if hflip is not None else out
        out = apply_vertical_flip(out, vflip) if vflip is not None else out
        out = apply_rotate90(out, turns) if turns is not None else out
        return out.clone() if out is x else out  # never write into the caller's tensor

    def _photometry(self, x: torch.Tensor, params: dict[str, object]) -> torch.Tensor:
        """Colour jitter, grayscale, blur, solarize, in place on x."""
        cfg = self.config
        if "jitter" in params:
            _color_jitter_(x, params["jitter"])
        if "grayscale" in params:
            _grayscale_(x, params["grayscale"])
        if "blur" in params:
            _gaussian_blur_(x, params["blur"], cfg.blur_kernel_size or blur_kernel_size(cfg.size))
        if "solarize" in params:
            _solarize_(x, params["solarize"], cfg.solarize_threshold)
        return x

    def same_recipe(self, other: "ViewTransform") -> bool:
        """True when ``other`` makes views the same way (config, statistics, output dtype and layout)."""
        return other is self or (isinstance(other, ViewTransform) and (other.config, other.mean, other.std,
                                 other.dtype, other.memory_format) == (self.config, self.mean, self.std, self.dtype,
                                                                       self.memory_format))

    def __repr__(self) -> str:
        return f"ViewTransform({self.config}, mean={self.mean}, std={self.std}, dtype={self.dtype})"


class MultiView:
    """Several views of the same batch: ``(images, generator) -> [view_1, view_2, ...]``.

    The uint8 -> float conversion is done once and shared; the views draw their parameters one after the other
    from the same generator. Views of one recipe (SimCLR's two) then run as one batch of all their rows, which
    gives exactly the tensors separate calls would give, in fewer and larger ops."""

    def __init__(self, views: Sequence[ViewTransform]):
        views = list(views)
        if not views or not all(isinstance(v, ViewTransform) for v in views):
            raise ValueError(f"views must be a non-empty list of ViewTransform, got {views!r}")
        self.views = views

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        x = to_float(images)
        first = self.views[0]
        if len(self.views) == 1 or not all(first.same_recipe(v) for v in self.views[1:]):
            return [view(x, generator) for view in self.views]
        # Symmetric views (SimCLR's, SwAV's...): draw each view's parameters in turn, exactly as separate calls
        # would, then run the ops once over the views stacked along the batch (fewer, larger ops: ~30 % faster on
        # a 2-core CPU at 32 px). Every op is per sample, so each view is what a separate call gives.
        _check_images(x)
        n, (batch, _, height, width) = len(self.views), x.shape
        drawn = [first.draw(batch, height, width, generator, x.device) for _ in self.views]
        params = {key: _concat_params([d[key] for d in drawn]) for key in drawn[0]}
        return list(first.apply(x.repeat(n, 1, 1, 1), params).split(batch))

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> ViewTransform:
        return self.views[index]

    def __repr__(self) -> str:
        return "MultiView([\n  " + ",\n  ".join(map(repr, self.views)) + "\n])"


def _concat_params(parts: list) -> object:
    """Per-sample parameters of several batches joined along the batch (tensors, or NamedTuples of tensors)."""
    if isinstance(parts[0], tuple):
        return type(parts[0])(*(torch.cat(field) for field in zip(*parts)))
    return torch.cat(parts)


def _output_options(dtype: torch.dtype, memory_format: torch.memory_format) -> dict:
    return {"dtype": dtype, "memory_format": memory_format}


def simclr_views(size: int, mean: Sequence[float], std: Sequence[float], strength: float = 1.0,
                 blur_p: float | None = None, jitter_p: float = 0.8, grayscale_p: float = 0.2,
                 scale: tuple[float, float] = (0.08, 1.0), hflip_p: float = 0.5, dtype: torch.dtype = torch.float32,
                 memory_format: torch.memory_format = torch.contiguous_format) -> MultiView:
    """SimCLR's two symmetric views (Chen et al. 2020, appendix A): RandomResizedCrop(scale), horizontal flip 0.5,
    ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) with p=0.8, grayscale 0.2, Gaussian blur (kernel ~10 % of the side,
    sigma in [0.1, 2]).

    strength s: 1.0 gives 0.8/0.8/0.8/0.2 (DoGo's and CaSSLe's SimCLR); 0.5 gives 0.4/0.4/0.4/0.1 (SimCLR's CIFAR
    runs, MoCo v2+, DoGo's SimSiam). blur_p: None = 0 up to 64 px (SimCLR drops blur on CIFAR), else 0.5.
    """
    _check_nonnegative("strength", strength)
    if 0.2 * strength > 0.5:
        raise ValueError(f"strength must be <= 2.5 (hue = 0.2 * strength must stay <= 0.5), got {strength!r}")
    blur_p = (0.0 if size <= 64 else 0.5) if blur_p is None else blur_p
    config = ViewConfig(size, scale=scale, hflip_p=hflip_p, jitter_p=jitter_p, brightness=0.8 * strength,
                        contrast=0.8 * strength, saturation=0.8 * strength, hue=0.2 * strength,
                        grayscale_p=grayscale_p, blur_p=blur_p)
    view = ViewTransform(config, mean, std, **_output_options(dtype, memory_format))
    return MultiView([view, view])


def byol_views(size: int, mean: Sequence[float], std: Sequence[float],
               blur_p: tuple[float, float] | None = None, solarize_p: tuple[float, float] = (0.0, 0.2),
               scale: tuple[float, float] = (0.08, 1.0), dtype: torch.dtype = torch.float32,
               memory_format: torch.memory_format = torch.contiguous_format) -> MultiView:
    """BYOL's two asymmetric views (Grill et al. 2020, table 6), also used by Barlow Twins in CaSSLe:
    RandomResizedCrop, flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale 0.2, then
    blur 1.0 / 0.1 and solarize 0.0 / 0.2 for view 1 / view 2.

    blur_p: None = (1.0, 0.1) above 64 px; up to 64 px (0, 0), as CaSSLe's/solo-learn's CIFAR scripts (blur of a
    32 px image mostly erases it). Pass ``blur_p=(1.0, 0.1)`` for the paper's ImageNet recipe at any size.
    """
    if blur_p is None:
        blur_p = (1.0, 0.1) if size > 64 else (0.0, 0.0)
    for name, pair in (("blur_p", blur_p), ("solarize_p", solarize_p)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a pair (view 1, view 2) of probabilities, got {pair!r}")
    base = ViewConfig(size, scale=scale, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    return MultiView([ViewTransform(replace(base, blur_p=b, solarize_p=s), mean, std,
                                    **_output_options(dtype, memory_format))
                      for b, s in zip(blur_p, solarize_p)])


def fkt_views(size: int, mean: Sequence[float] = FKT_CODE_STATS[0], std: Sequence[float] = FKT_CODE_STATS[1],
              blur_kernel_size: int | None = None, color_jitter: bool = False, hflip: bool = False,
              scale: tuple[float, float] = (0.08, 1.0), dtype: torch.dtype = torch.float32,
              memory_format: torch.memory_format = torch.contiguous_format) -> MultiView:
    """The two SSL views of FKT's joint training (FKT, arXiv 2304.01354, ``src/joint_train.py``): RandomResizedCrop,
    vertical flip 0.5, grayscale 0.2, Gaussian blur p=0.5 (kernel 21 at 224 px, scaled to ``size``; sigma in
    [0.1, 2]), RandomAffine(+-180 deg, translate 0.2), normalize.

    Approximation: the affine rotation is replaced by a uniformly random quarter turn. With the vertical flip this
    draws uniformly from the 8 symmetries of the square (no interpolation, no black corners); the arbitrary angles
    and the 20 % translation are not reproduced (the crop already shifts content).

    Quirks of the code kept by default: no horizontal flip (its variable is overwritten; ``hflip=True`` restores
    it), the defined ColorJitter(0.8, 0.8, 0.8, 0.2) p=0.8 is never applied (``color_jitter=True`` applies it),
    and the fundus statistics :data:`FKT_CODE_STATS` normalise every dataset (the default ``mean``/``std``; pass
    ``STATS[name]`` for the dataset's own). ``scale``: the crop's area range (torchvision's default in the code).
    """
    kernel = blur_kernel_size or blur_kernel_size_for_fkt(size)
    config = ViewConfig(size, scale=scale, hflip_p=0.5 if hflip else 0.0, vflip_p=0.5, jitter_p=0.8 if color_jitter else 0.0,
                        brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, grayscale_p=0.2, blur_p=0.5,
                        blur_kernel_size=kernel, rotate90=True)
    view = ViewTransform(config, mean, std, **_output_options(dtype, memory_format))
    return MultiView([view, view])


def blur_kernel_size_for_fkt(size: int) -> int:
    """FKT's kernel 21 at 224 px, scaled to ``size`` (odd, >= 3): 21 at 224, 7 at 64, 3 at 32."""
    return blur_kernel_size(size, fraction=21 / 224)


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32,
                   memory_format: torch.memory_format = torch.contiguous_format) -> ViewTransform:
    """No augmentation: resize to (size, size) with antialiasing if the images differ, then normalize."""
    return ViewTransform(ViewConfig.plain(size), mean, std, **_output_options(dtype, memory_format))


def supervised_views(size: int, mean: Sequence[float], std: Sequence[float], recipe: str = "crop_flip",
                     dtype: torch.dtype = torch.float32,
                     memory_format: torch.memory_format = torch.contiguous_format,
                     scale: tuple[float, float] = (0.35, 1.0)) -> MultiView:
    """One view for supervised training. ``recipe``: ``"crop_flip"`` (RandomResizedCrop ``scale``, default
    (0.35, 1), + horizontal flip, the usual small-image recipe; (0.08, 1) is CaSSLe's linear probe), ``"simclr"``
    (one SimCLR view) or ``"none"`` (eval transform)."""
    options = _output_options(dtype, memory_format)
    if recipe == "crop_flip":
        config = ViewConfig(size, scale=tuple(scale), jitter_p=0.0, grayscale_p=0.0)
        return MultiView([ViewTransform(config, mean, std, **options)])
    if recipe == "simclr":
        return MultiView(simclr_views(size, mean, std, **options).views[:1])
    if recipe == "none":
        return MultiView([eval_transform(size, mean, std, **options)])
    raise ValueError(f"recipe must be one of 'crop_flip', 'simclr', 'none', got {recipe!r}")


VIEW_RECIPES = ("simclr", "byol", "mocov2plus", "simsiam", "fkt")


def views_for(recipe: str, size: int, mean: Sequence[float], std: Sequence[float], **options) -> MultiView:
    """The two-view pipeline a method uses, by name: ``"simclr"`` (strength 1, 0.8/0.8/0.8/0.2), ``"byol"``
    (asymmetric, also Barlow Twins), ``"mocov2plus"`` and ``"simsiam"`` (SimCLR views at strength 0.5:
    0.4/0.4/0.4/0.1, as solo-learn's MoCo v2+ and DoGo's SimSiam), ``"fkt"``. ``options`` go to the builder."""
    if recipe == "simclr":
        return simclr_views(size, mean, std, **options)
    if recipe in ("mocov2plus", "simsiam"):
        return simclr_views(size, mean, std, **{"strength": 0.5, **options})
    if recipe == "byol":
        return byol_views(size, mean, std, **options)
    if recipe == "fkt":
        return fkt_views(size, mean, std, **options)
    raise ValueError(f"recipe must be one of {', '.join(VIEW_RECIPES)}, got {recipe!r}")


__all__ = [
    "STATS", "IMAGENET_STATS", "FKT_CODE_STATS", "to_float", "bernoulli_params",
    "resized_crop_params", "apply_resized_crop", "random_resized_crop", "resize",
    "apply_horizontal_flip", "apply_vertical_flip", "horizontal_flip", "vertical_flip",
    "ColorJitterParams", "color_jitter_params", "apply_color_jitter", "color_jitter",
    "apply_grayscale", "random_grayscale",
    "BlurParams", "gaussian_blur_params", "apply_gaussian_blur", "gaussian_blur", "blur_kernel_size",
    "blur_kernel_size_for_fkt", "apply_solarize", "solarize",
    "rotate90_params", "apply_rotate90", "rotate90", "normalize",
    "ViewConfig", "ViewTransform", "MultiView", "simclr_views", "byol_views", "fkt_views", "eval_transform",
    "supervised_views", "views_for", "VIEW_RECIPES",
]
