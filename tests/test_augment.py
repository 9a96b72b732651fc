"""Batched augmentations (ssltutor.data.augment) against torchvision.transforms.v2.functional applied per sample
with the same parameters, plus probabilities, seeding, dtypes, pipelines and argument errors.

Tolerances (max abs difference, float32 images in [0, 1]): crop 1e-5 (same pixel-centre convention and edge
clamping as ``F.interpolate``; only float rounding of the sampling coordinates differs), colour jitter 1e-4 (hue uses
a closed form of HSV -> RGB), blur 1e-5, flips / grayscale / solarize / normalize / rotations 1e-6 or exact.
"""
import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssltutor.data import augment as A

MEAN, STD = A.STATS["cifar10"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(batch=16, height=32, width=32, seed=0, quantized=True) -> torch.Tensor:
    """Float images in [0, 1]; quantized to uint8 levels by default so channel ties (r == g) and gray pixels occur."""
    x = torch.rand(batch, 3, height, width, generator=gen(seed))
    if quantized:
        x = (x * 255).round() / 255
    x[0, :, :4] = x[0, :1, :4]  # a gray band: r == g == b
    return x


def uint8_images(batch=16, size=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen(seed))


def per_sample(fn, x, *params) -> torch.Tensor:
    """Apply a torchvision functional op sample by sample (the slow, obvious reference)."""
    return torch.stack([fn(x[b], *(p[b] for p in params)) for b in range(x.shape[0])])


# ------------------------------------------------------------------------------------------------------------------
# each op == torchvision per sample with the same parameters
# ------------------------------------------------------------------------------------------------------------------


def test_to_float_matches_torchvision():
    u = uint8_images()
    assert torch.equal(A.to_float(u), TF.to_dtype(u, torch.float32, scale=True))
    assert A.to_float(u, torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="uint8"):
        A.to_float(u.int())


@pytest.mark.parametrize("size,height,width", [(32, 32, 32), (16, 40, 48), (56, 28, 36)])
def test_resized_crop_matches_torchvision(size, height, width):
    x = images(24, height, width, quantized=False)
    boxes = A.resized_crop_params(24, height, width, generator=gen(1))
    ours = A.apply_resized_crop(x, boxes, size)
    ref = per_sample(lambda im, box: TF.resized_crop(im, *box.tolist(), [size, size], antialias=False), x, boxes)
    assert ours.shape == (24, 3, size, size)
    assert (ours - ref).abs().max() < 1e-5


def test_crop_boxes_follow_torchvision_distribution():
    boxes = A.resized_crop_params(4000, 32, 32, generator=gen(2)).double()
    top, left, h, w = boxes.unbind(1)
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 32).all() and (left + w <= 32).all()
    rrc = v2.RandomResizedCrop(32)
    with torch.random.fork_rng():  # torchvision draws from the global generator
        torch.manual_seed(0)
        ref = torch.tensor([[p["height"], p["width"]] for p in (rrc.make_params([torch.zeros(3, 32, 32)])
                                                                 for _ in range(2000))], dtype=torch.double)
    ours_area, ref_area = (h * w / 1024).mean(), (ref[:, 0] * ref[:, 1] / 1024).mean()
    assert abs(ours_area - ref_area) < 0.025  # both ~0.5; 3 sigma of the difference ~0.02
    assert abs((w / h).log().mean() - (ref[:, 1] / ref[:, 0]).log().mean()) < 0.03


def test_crop_falls_back_to_central_crop():
    # No attempt can fit a 2:1 to 3:1 crop covering the whole square: torchvision's fallback is the centre crop.
    boxes = A.resized_crop_params(8, 30, 30, scale=(1.0, 1.0), ratio=(2.0, 3.0), generator=gen())
    assert boxes.tolist() == [[7, 0, 15, 30]] * 8


def test_flips_match_torchvision():
    x = images()
    mask = A.bernoulli_params(16, 0.5, gen())
    assert 0 < mask.sum() < 16
    ref_h = torch.stack([TF.horizontal_flip(x[b]) if mask[b] else x[b] for b in range(16)])
    ref_v = torch.stack([TF.vertical_flip(x[b]) if mask[b] else x[b] for b in range(16)])
    assert torch.equal(A.apply_horizontal_flip(x, mask), ref_h)
    assert torch.equal(A.apply_vertical_flip(x, mask), ref_v)


def test_geometry_folded_into_the_crop_grid_equals_sequential_ops():
    x = images(32, quantized=False)
    g = gen(3)
    boxes = A.resized_crop_params(32, 32, 32, generator=g)
    hflip, vflip = A.bernoulli_params(32, 0.5, g), A.bernoulli_params(32, 0.5, g)
    turns = A.rotate90_params(32, g)
    fused = A.apply_resized_crop(x, boxes, 24, hflip, vflip, turns)
    crop = A.apply_resized_crop(x, boxes, 24)
    sequential = A.apply_rotate90(A.apply_vertical_flip(A.apply_horizontal_flip(crop, hflip), vflip), turns)
    assert (fused - sequential).abs().max() < 1e-6


def jitter_reference(x: torch.Tensor, params: A.ColorJitterParams) -> torch.Tensor:
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    out = []
    for b in range(x.shape[0]):
        image = x[b]
        if params.apply[b]:
            for op in params.order[b].tolist():
                image = ops[op](image, params.factors[b, op].item())
        out.append(image)
    return torch.stack(out)


@pytest.mark.parametrize("strength", [(0.8, 0.8, 0.8, 0.2), (0.4, 0.4, 0.2, 0.1), (0.0, 0.0, 0.0, 0.5)])
def test_color_jitter_matches_torchvision(strength):
    x = images(48)
    params = A.color_jitter_params(48, *strength, p=0.8, generator=gen(4))
    assert (A.apply_color_jitter(x, params) - jitter_reference(x, params)).abs().max() < 1e-4


def test_color_jitter_order_is_a_random_permutation_per_sample():
    params = A.color_jitter_params(4000, generator=gen(5))
    assert torch.equal(params.order.sort(1).values, torch.arange(4).expand(4000, 4))
    first = torch.bincount(params.order[:, 0], minlength=4).double() / 4000
    assert (first - 0.25).abs().max() < 3 * math.sqrt(0.25 * 0.75 / 4000)


def test_hue_shift_matches_torchvision_at_extremes():
    x = images(8)
    x[1] = x[1, :1]                       # a fully gray image
    x[2, 0], x[2, 1:] = 1.0, 0.0          # saturated red
    shifts = torch.tensor([-0.5, -0.3, 0.5, 0.25, 0.1, -0.1, 0.49, 1e-3])
    params = A.ColorJitterParams(torch.ones(8, dtype=torch.bool),
                                 torch.stack([torch.ones(8), torch.ones(8), torch.ones(8), shifts], 1),
                                 torch.tensor([[3, 0, 1, 2]] * 8))
    ref = torch.stack([TF.adjust_hue(x[b], shifts[b].item()) for b in range(8)])
    assert (A.apply_color_jitter(x, params) - ref).abs().max() < 1e-4


def test_grayscale_matches_torchvision():
    x = images()
    mask = A.bernoulli_params(16, 0.5, gen(6))
    ref = torch.stack([TF.rgb_to_grayscale(x[b], 3) if mask[b] else x[b] for b in range(16)])
    assert (A.apply_grayscale(x, mask) - ref).abs().max() < 1e-6


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_gaussian_blur_matches_torchvision(kernel_size):
    x = images(16, 20, 24, quantized=False)
    params = A.gaussian_blur_params(16, (0.1, 2.0), 0.7, gen(7))
    ref = torch.stack([TF.gaussian_blur(x[b], [kernel_size] * 2, [params.sigma[b].item()] * 2) if params.apply[b]
                       else x[b] for b in range(16)])
    assert (A.apply_gaussian_blur(x, params, kernel_size) - ref).abs().max() < 1e-5


def test_solarize_matches_torchvision():
    x = images()
    mask = A.bernoulli_params(16, 0.5, gen(8))
    ref = torch.stack([TF.solarize(x[b], 0.4) if mask[b] else x[b] for b in range(16)])
    assert (A.apply_solarize(x, mask, 0.4) - ref).abs().max() < 1e-6


def test_rotation_labels_match_applied_rotation():
    x = images(64)
    rotated, labels = A.rotate90(x, gen(9))
    assert labels.dtype == torch.int64 and set(labels.tolist()) == {0, 1, 2, 3}
    for b in range(64):
        assert torch.equal(rotated[b], torch.rot90(x[b], int(labels[b]), dims=(1, 2)))
    with pytest.raises(ValueError, match="square"):
        A.rotate90(images(2, 8, 10))


def test_normalize_matches_torchvision():
    x = images()
    assert (A.normalize(x, MEAN, STD) - TF.normalize(x, list(MEAN), list(STD))).abs().max() < 1e-6


def test_ops_do_not_modify_their_input():
    x = images()
    before = x.clone()
    g = gen(10)
    A.color_jitter(x, p=1.0, generator=g)
    A.random_grayscale(x, p=1.0, generator=g)
    A.gaussian_blur(x, 3, p=1.0, generator=g)
    A.solarize(x, p=1.0, generator=g)
    A.horizontal_flip(x, p=1.0, generator=g)
    assert torch.equal(x, before)


# ------------------------------------------------------------------------------------------------------------------
# probabilities hold empirically (4,000 samples, within 3 sigma)
# ------------------------------------------------------------------------------------------------------------------


def within_3_sigma(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) <= 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_bernoulli_params_rate(p):
    assert within_3_sigma(int(A.bernoulli_params(4000, p, gen(11)).sum()), 4000, p)


def test_random_ops_apply_with_their_probability():
    n = 4000
    x = images(n, 6, 6, seed=12)
    x[:, :, :, 0] = 1.0  # left column white, right column black: flips and turns are visible
    x[:, :, :, -1] = 0.0
    g = gen(13)
    flipped = A.horizontal_flip(x, 0.5, g)
    assert within_3_sigma(int((flipped[:, 0, 0, 0] == 0).sum()), n, 0.5)
    gray = A.random_grayscale(x, 0.2, g)
    assert within_3_sigma(int((gray[:, 0] == gray[:, 1]).all(-1).all(-1).sum()), n, 0.2)
    jittered = A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.8, generator=g)
    assert within_3_sigma(int((jittered != x).flatten(1).any(1).sum()), n, 0.8)
    solarized = A.solarize(x, 0.5, p=0.3, generator=g)
    assert within_3_sigma(int((solarized[:, 0, 0, 0] == 0).sum()), n, 0.3)
    blurred = A.gaussian_blur(x, 3, (0.5, 1.0), p=0.5, generator=g)
    assert within_3_sigma(int((blurred != x).flatten(1).any(1).sum()), n, 0.5)
    _, labels = A.rotate90(x, g)
    assert all(within_3_sigma(int((labels == k).sum()), n, 0.25) for k in range(4))


# ------------------------------------------------------------------------------------------------------------------
# pipelines
# ------------------------------------------------------------------------------------------------------------------


def test_same_seed_gives_same_views_and_other_seeds_differ():
    u = uint8_images(32)
    views = A.simclr_views(32, MEAN, STD, blur_p=0.5)
    first, again, other = views(u, gen(14)), views(u, gen(14)), views(u, gen(15))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], first[1])  # the two views draw their own parameters


@pytest.mark.parametrize("options", [{}, {"dtype": torch.bfloat16, "memory_format": torch.channels_last}])
def test_symmetric_views_run_as_one_batch_but_equal_separate_calls(options):
    """MultiView stacks identical views into one pass over 2B rows; each view must be bitwise what a separate call
    of the view gives with the generator in the same state (every op on, crop from a larger image)."""
    config = A.ViewConfig(24, hflip_p=0.5, vflip_p=0.5, rotate90=True, blur_p=0.5, solarize_p=0.5)
    view = A.ViewTransform(config, MEAN, STD, **options)
    u = uint8_images(20, 40)
    g = gen(21)
    separate = [view(u, g), view(u, g)]
    fused = A.MultiView([view, A.ViewTransform(config, MEAN, STD, **options)])(u, gen(21))
    assert all(torch.equal(a, b) and a.stride() == b.stride() for a, b in zip(separate, fused))
    assert not torch.equal(fused[0], fused[1])
    assert view.apply(A.to_float(u), view.draw(20, 40, 40, gen(21))).equal(separate[0])


@pytest.mark.parametrize("builder", [A.simclr_views, A.byol_views, A.fkt_views])
def test_pipelines_shapes_dtypes_and_bfloat16(builder):
    u = uint8_images(16, 40)
    views = builder(32, MEAN, STD)
    out = views(u, gen(16))
    assert len(out) == 2 and all(v.shape == (16, 3, 32, 32) and v.dtype == torch.float32 for v in out)
    low = builder(32, MEAN, STD, dtype=torch.bfloat16)(u, gen(16))
    assert all(v.dtype == torch.bfloat16 for v in low)
    # bfloat16 only rounds the float32 result (relative error 2^-8 of values up to ~4 after normalisation)
    assert max((a.float() - b).abs().max().item() for a, b in zip(low, out)) < 0.04


def test_channels_last_output():
    u = uint8_images(8)
    plain = A.simclr_views(32, MEAN, STD)(u, gen(17))
    cl = A.simclr_views(32, MEAN, STD, memory_format=torch.channels_last)(u, gen(17))
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in cl)
    assert all(torch.equal(a, b) for a, b in zip(plain, cl))


def test_simclr_view_equals_ops_run_one_after_the_other():
    u = uint8_images(16)
    config = A.ViewConfig(32, blur_p=0.5, solarize_p=0.5)
    ours = A.ViewTransform(config, MEAN, STD)(u, gen(18))
    g, x = gen(18), A.to_float(u)
    boxes = A.resized_crop_params(16, 32, 32, generator=g)
    flip = A.bernoulli_params(16, 0.5, g)
    x = A.apply_horizontal_flip(A.apply_resized_crop(x, boxes, 32), flip)
    x = A.apply_color_jitter(x, A.color_jitter_params(16, 0.4, 0.4, 0.4, 0.1, 0.8, g))
    x = A.apply_grayscale(x, A.bernoulli_params(16, 0.2, g))
    x = A.apply_gaussian_blur(x, A.gaussian_blur_params(16, (0.1, 2.0), 0.5, g), A.blur_kernel_size(32))
    x = A.apply_solarize(x, A.bernoulli_params(16, 0.5, g))
    assert (ours - A.normalize(x, MEAN, STD)).abs().max() < 1e-5


def test_recipes_follow_the_papers():
    simclr = A.simclr_views(32, MEAN, STD)[0].config
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == pytest.approx((0.8, 0.8, 0.8, 0.2))
    assert (simclr.jitter_p, simclr.grayscale_p, simclr.hflip_p, simclr.blur_p) == (0.8, 0.2, 0.5, 0.0)
    assert A.simclr_views(224, MEAN, STD)[0].config.blur_p == 0.5
    half = A.simclr_views(32, MEAN, STD, strength=0.5)[0].config
    assert (half.brightness, half.hue) == pytest.approx((0.4, 0.1))
    byol = [v.config for v in A.byol_views(96, MEAN, STD)]
    assert [(c.blur_p, c.solarize_p) for c in byol] == [(1.0, 0.0), (0.1, 0.2)]
    assert (byol[0].brightness, byol[0].contrast, byol[0].saturation, byol[0].hue) == (0.4, 0.4, 0.2, 0.1)
    fkt = A.fkt_views(224)[0]
    assert (fkt.config.hflip_p, fkt.config.vflip_p, fkt.config.jitter_p, fkt.config.blur_p) == (0.0, 0.5, 0.0, 0.5)
    assert fkt.config.rotate90 and fkt.config.blur_kernel_size == 21 and fkt.mean == A.FKT_CODE_STATS[0]
    assert set(A.STATS) >= {"cifar10", "cifar100", "digits", "intel_image", "aptos2019"}
    assert len(A.views_for("byol", 32, MEAN, STD)) == 2
    assert A.views_for("mocov2plus", 32, MEAN, STD)[0].config.brightness == pytest.approx(0.4)
    assert len(A.supervised_views(32, MEAN, STD)) == 1


def test_eval_transform_resizes_and_normalizes_without_touching_input():
    u = uint8_images(4, 64)
    x = A.to_float(u)
    out = A.eval_transform(32, MEAN, STD)(u)
    ref = TF.normalize(TF.resize(x, [32, 32], antialias=True), list(MEAN), list(STD))
    assert (out - ref).abs().max() < 1e-5
    same = A.eval_transform(64, MEAN, STD)
    before = x.clone()
    assert (same(x) - TF.normalize(x, list(MEAN), list(STD))).abs().max() < 1e-5
    assert torch.equal(x, before)


# ------------------------------------------------------------------------------------------------------------------
# bfloat16 for every op, bad arguments
# ------------------------------------------------------------------------------------------------------------------


def test_every_op_runs_in_bfloat16():
    x = images(8)
    checks = {
        "crop": lambda t: A.apply_resized_crop(t, A.resized_crop_params(8, 32, 32, generator=gen(20)), 16),
        "jitter": lambda t: A.apply_color_jitter(t, A.color_jitter_params(8, p=1.0, generator=gen(21))),
        "gray": lambda t: A.apply_grayscale(t, torch.ones(8, dtype=torch.bool)),
        "blur": lambda t: A.apply_gaussian_blur(t, A.gaussian_blur_params(8, p=1.0, generator=gen(22)), 5),
        "solarize": lambda t: A.apply_solarize(t, torch.ones(8, dtype=torch.bool)),
        "rotate": lambda t: A.apply_rotate90(t, A.rotate90_params(8, gen(23))),
        "flip": lambda t: A.apply_horizontal_flip(t, torch.ones(8, dtype=torch.bool)),
        "normalize": lambda t: A.normalize(t, MEAN, STD),
    }
    for name, op in checks.items():
        low = op(x.bfloat16())
        assert low.dtype == torch.bfloat16, name
        assert (low.float() - op(x)).abs().max() < 0.05, name


@pytest.mark.parametrize("call,name", [
    (lambda: A.horizontal_flip(images(), p=1.5), "p"),
    (lambda: A.bernoulli_params(4, -0.1), "p"),
    (lambda: A.color_jitter(images(), p=2.0), "p"),
    (lambda: A.color_jitter(images(), hue=0.7), "hue"),
    (lambda: A.color_jitter(images(), brightness=-1.0), "brightness"),
    (lambda: A.random_resized_crop(images(), 32, scale=(0.9, 0.1)), "scale"),
    (lambda: A.random_resized_crop(images(), 32, scale=(0.0, 1.0)), "scale"),
    (lambda: A.random_resized_crop(images(), 32, ratio=(2.0, 1.0)), "ratio"),
    (lambda: A.random_resized_crop(images(), 0), "size"),
    (lambda: A.gaussian_blur(images(), 4), "kernel_size"),
    (lambda: A.gaussian_blur(images(), 3, sigma=(2.0, 1.0)), "sigma"),
    (lambda: A.solarize(images(), threshold=1.5), "threshold"),
    (lambda: A.ViewConfig(0), "size"),
    (lambda: A.ViewConfig(32, hflip_p=1.2), "hflip_p"),
    (lambda: A.ViewConfig(32, scale=(1.0, 0.5)), "scale"),
    (lambda: A.simclr_views(32, MEAN, STD, blur_p=-0.5), "blur_p"),
    (lambda: A.simclr_views(-4, MEAN, STD), "size"),
    (lambda: A.normalize(images(), MEAN, (0.2, 0.0, 0.2)), "std"),
    (lambda: A.views_for("nope", 32, MEAN, STD), "recipe"),
    (lambda: A.apply_color_jitter(uint8_images(), A.color_jitter_params(16)), "x must be a float"),
])
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_views_with_blur_work_under_bf16_autocast():
    """fit runs method.step (and so the views) under autocast: the batched blur's conv returns bf16 there."""
    import torch
    from ssltutor.data import augment

    views = augment.simclr_views(32, *augment.IMAGENET_STATS, blur_p=1.0)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = views(x, torch.Generator().manual_seed(0))
    assert all(v.shape == (8, 3, 32, 32) and torch.isfinite(v.float()).all() for v in out)
