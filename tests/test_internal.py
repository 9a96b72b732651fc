"""Internal pretext task and SLA: joint labels, channel discarding, inference against slow references, learning."""
import pytest
import torch

from ssltutor.data import load
from ssltutor.evaluate import predict_labels
from ssltutor.studies.base import cap
from ssltutor.studies.internal import step_time_ratio
from ssltutor.methods import METHODS, Batch, create
from ssltutor.methods.internal import (
    InternalPretext,
    aggregated_logits,
    channel_groups,
    decode,
    discard_channels,
    discard_masks,
    joint_labels,
    single_logits,
)
from ssltutor.models import create_backbone
from ssltutor.presets import preset
from ssltutor.train import fit


@pytest.fixture(autouse=True)
def one_thread():
    """These width-8 nets are too small to gain from a second thread (on a shared machine a second thread cost 10x
    the CPU time here before OMP_WAIT_POLICY=PASSIVE): run this module single-threaded, restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(width=8):
    torch.manual_seed(0)
    return create_backbone("small_convnet", width=width)


def _batch(n=8, size=32, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return Batch(images, torch.arange(n) % classes, g)


# ---------------------------------------------------------------------------------------------------------------
# Joint labels
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes,transforms", [(2, 1), (10, 4), (7, 5), (6, 16)])
def test_joint_labels_round_trip(classes, transforms):
    y = torch.arange(classes).repeat_interleave(transforms)
    j = torch.arange(transforms).repeat(classes)
    joint = joint_labels(y, j, transforms)
    assert joint.tolist() == list(range(classes * transforms))  # a bijection onto [0, N * M), class-major
    y_back, j_back = decode(joint, transforms)
    assert torch.equal(y_back, y) and torch.equal(j_back, j)
    assert torch.equal(joint_labels(y, 0, transforms), y * transforms)


def test_joint_labels_reject_bad_transform_indices():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        joint_labels(torch.tensor([0, 1]), torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="num_transforms"):
        joint_labels(torch.tensor([0]), 0, 0)


def test_aggregated_and_single_logits_match_a_loop():
    K, B, N = 3, 5, 4
    logits = torch.randn(K, B, N * K)
    slow = torch.zeros(B, N)
    for b in range(B):
        for y in range(N):
            slow[b, y] = sum(logits[k, b, y * K + k] for k in range(K)) / K
    assert torch.allclose(aggregated_logits(logits, K), slow)
    assert torch.equal(single_logits(logits, K), torch.stack([logits[0, :, y * K] for y in range(N)], 1))
    with pytest.raises(ValueError, match="K=2"):
        aggregated_logits(logits, 2)


# ---------------------------------------------------------------------------------------------------------------
# Channel discarding
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grouping", ["contiguous", "random"])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("identity", [False, True])
def test_discard_zeroes_exactly_the_chosen_channels(grouping, rescale, identity):
    C, M, B = 12, 4, 3
    groups = channel_groups(C, M, grouping, seed=1)
    assert torch.bincount(groups).tolist() == [C // M] * M  # a partition into equal groups
    if grouping == "contiguous":
        assert groups.tolist() == sorted(groups.tolist())
    f = torch.rand(B, C, 4, 4) + 0.5  # strictly positive, so a zero can only come from discarding
    out = discard_channels(f, discard_masks(groups, identity, rescale))
    assert out.shape == ((M + identity) * B, C, 4, 4)
    copies = out.reshape(M + identity, B, C, 4, 4)
    if identity:
        assert torch.equal(copies[0], f)
    for j in range(M):
        copy = copies[j + identity]
        dropped = groups == j
        assert torch.all(copy[:, dropped] == 0)
        scale = C / (C - int(dropped.sum())) if rescale else 1.0
        assert torch.allclose(copy[:, ~dropped], f[:, ~dropped] * scale)


def test_random_grouping_is_seeded():
    a, b, c = (channel_groups(32, 4, "random", seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, channel_groups(32, 4, "contiguous"))


@pytest.mark.parametrize("grouping", ["contiguous", "random"])
def test_method_feeds_the_discarded_copies_to_the_next_stage(grouping):
    m = create("internal", _net(), num_classes=5, stage=1, grouping=grouping, group_seed=3)
    seen = {}
    m.backbone.stages[2].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    m.step(_batch(n=6))
    x = seen["x"].reshape(4, 6, *seen["x"].shape[1:])
    energy = x.abs().sum(dim=(1, 3, 4))  # (copy, channel)
    for j in range(4):
        assert torch.all(energy[j][m.groups == j] == 0)
        assert torch.all(energy[j][m.groups != j] > 0)


# ---------------------------------------------------------------------------------------------------------------
# Inference against a slow per-copy reference
# ---------------------------------------------------------------------------------------------------------------
def _slow_copy_logits(m, x, t, r):
    """Copy (t, r) the obvious way: rotate the input, run to the stage, multiply by mask t, run the rest."""
    net = m.backbone
    f = net.forward_stages(net.stem(torch.rot90(x, r, dims=(2, 3))), 0, m.stage + 1)
    f = f * m.masks[t][None, :, None, None]
    return m.classifier(net.pool(net.forward_stages(f, m.stage + 1)))


@pytest.mark.parametrize("name,options", [
    ("internal", dict(stage=1)),
    ("internal", dict(stage=3, include_identity=True, rescale=True)),
    ("internal", dict(stage=2, grouping="random", rotation=True)),
    ("sla", {}),
])
def test_aggregated_inference_equals_per_copy_reference(name, options):
    m = create(name, _net(), num_classes=5, **options)
    m.step(_batch(n=4))  # BN running statistics away from their initial values
    m.eval()
    x = torch.randn(3, 3, 32, 32)
    R, T = m.num_rotations, m.num_feature_transforms
    K = R * T
    slow = torch.zeros(3, 5)
    with torch.no_grad():
        for t in range(T):
            for r in range(R):
                k = t * R + r
                slow += _slow_copy_logits(m, x, t, r)[:, [y * K + k for y in range(5)]] / K
        single = _slow_copy_logits(m, x, 0, 0)[:, [y * K for y in range(5)]]
    assert torch.allclose(m.predict(x, "aggregated"), slow, atol=1e-5)
    assert torch.allclose(m.predict(x, "single"), single, atol=1e-5)


def test_identity_copy_makes_single_inference_the_plain_network():
    m = create("internal", _net(), num_classes=5, include_identity=True).eval()
    x = torch.randn(2, 3, 32, 32)
    plain = m.classifier(m.backbone(x))[:, ::m.num_transforms]
    assert torch.allclose(m.predict(x, "single"), plain, atol=1e-6)


def test_step_loss_is_cross_entropy_on_joint_labels():
    m = create("internal", _net(), num_classes=5, stage=2, num_groups=2)
    batch = _batch(n=4)
    x = m.make_views(Batch(batch.images, batch.labels, torch.Generator().manual_seed(7)))[0]
    logits = m.joint_logits(x)  # (2, 4, 10)
    targets = torch.tensor([y * 2 + j for j in range(2) for y in batch.labels.tolist()])
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets)
    out = m.step(Batch(batch.images, batch.labels, torch.Generator().manual_seed(7)))
    assert torch.allclose(out["loss"], expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Combinations, options, cost
# ---------------------------------------------------------------------------------------------------------------
def test_fkt_combination_adds_a_contrastive_term_with_gradients():
    m = create("internal", _net(), num_classes=5, contrastive_weight=0.5, head_scale=1 / 32)
    out = m.step(_batch(n=8))
    assert torch.allclose(out["loss"], out["joint_loss"] + 0.5 * out["ssl_loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in m.projector.parameters())
    assert len(m.views) == 3  # classification view + two contrastive views


def test_registered_and_sla_has_four_rotation_copies():
    assert METHODS["internal"] is InternalPretext and "sla" in METHODS
    m = create("sla", _net(), num_classes=5)
    assert m.num_transforms == 4 and m.classifier.out_features == 20
    assert create("internal", _net(), num_classes=5, rotation=True, include_identity=True).num_transforms == 20


@pytest.mark.parametrize("options,allowed", [
    (dict(stage=4), "0, 1, 2, 3"),
    (dict(grouping="blocks"), "'contiguous', 'random'"),
    (dict(inference="vote"), "'single', 'aggregated'"),
    (dict(num_groups=1), r"\[2, 64\]"),
    (dict(contrastive_views="byol"), "'simclr', 'fkt'"),
    (dict(contrastive_weight=-1.0), ">= 0"),
    (dict(num_classes=1), ">= 2"),
    (dict(stage_index=1), "allowed are"),
])
def test_bad_options_raise_value_error_listing_allowed_values(options, allowed):
    kw = {"num_classes": 5, **options}
    with pytest.raises(ValueError, match=allowed):
        create("internal", _net(), **kw)


def test_bad_predict_mode_and_grouping_raise():
    m = create("internal", _net(), num_classes=5).eval()
    with pytest.raises(ValueError, match="'single', 'aggregated'"):
        m.predict(torch.randn(1, 3, 32, 32), "mean")
    with pytest.raises(ValueError, match="'contiguous', 'random'"):
        channel_groups(8, 2, "interleaved")


def test_step_time_ratio_is_a_positive_ratio():
    ratio = step_time_ratio(3, 4, "small_convnet", batch_size=8, image_size=16, repeats=1, width=4, warmup=1)
    assert 0 < ratio < 10


# ---------------------------------------------------------------------------------------------------------------
# Learning on a real subset
# ---------------------------------------------------------------------------------------------------------------
def test_internal_learns_above_chance_on_intel_image(shared_data):
    """6 classes (chance 17 %): a short CPU run of the default internal method gets well above chance with both
    inference modes."""
    train = cap(load("intel_image", shared_data, "train", size=32), 600, 0)
    test = cap(load("intel_image", shared_data, "test", size=32), 240, 0)
    torch.manual_seed(0)
    m = create("internal", create_backbone("small_convnet", width=8), num_classes=6, dataset="intel_image")
    hist = fit(m, train, epochs=4, batch_size=32, lr=0.05, seed=0, progress=False)
    assert hist.epochs["loss"].iloc[-1] < hist.epochs["loss"].iloc[0]
    for mode in ("single", "aggregated"):
        acc = (predict_labels(m, test.images, mode) == test.labels).float().mean().item()
        assert acc > 0.35, (mode, acc)


def test_study_helpers_run_end_to_end(shared_data):
    """run_study / summarize / run_ablation on a few real images at the smoke preset (shapes and bookkeeping)."""
    from ssltutor.studies.internal import joint_label_table, run_ablation, run_study, summarize
    from ssltutor.presets import preset

    settings = preset("smoke", paper="internal", max_train=64, batch_size=32)
    train = cap(load("cifar10", shared_data, "train"), 64, 0)
    test = cap(load("cifar10", shared_data, "test"), 32, 0)
    runs = run_study(train, test, settings, variants=("supervised", "internal"), seeds=(0, 1))
    assert len(runs) == 2 * (1 + 2) and set(runs.inference) == {"plain", "single", "aggregated"}
    table = summarize(runs)
    assert (table.seeds == 2).all() and table.overhead_mean[table.variant == "supervised"].eq(1.0).all()
    ablation = run_ablation(train, test, dict(settings, timing_repeats=1), stages=(3,), groups=(2,))
    # the stage ablation at stage 3 (M = 4); the M ablation at the default stage, -2 = 2 of small_convnet
    assert set(zip(ablation.stage, ablation.M)) == {(3, 4), (2, 2)} and (ablation.overhead > 0).all()
    rows = joint_label_table(torch.tensor([2, 0]), 3)
    assert rows["joint y*M+j"].tolist() == [6, 0, 7, 1, 8, 2]


def test_stage_counts_from_the_end_and_defaults_to_the_one_before_the_last():
    net = create_backbone("res_convnet", width=4)  # stages 0, 1, 2
    assert InternalPretext(net, 10).stage == 1
    assert InternalPretext(create_backbone("res_convnet", width=4), 10, stage=-1).stage == 2
    assert not InternalPretext(create_backbone("res_convnet", width=4), 10).pooled_discard
    with pytest.raises(ValueError, match="stage must be one of 0, 1, 2, -1, -2, -3, got 3"):
        InternalPretext(create_backbone("res_convnet", width=4), 10, stage=3)
    assert preset("cpu", paper="internal")["stage"] == -2


def test_group_recovery_a_linear_head_reads_the_discarded_group(shared_data):
    from ssltutor.data import augment
    from ssltutor.studies.internal import discarded_group_features, group_recovery

    data = load("cifar10", root=shared_data, split="train", size=32)
    cifar_images = augment.normalize(data.images[:96].float() / 255, *augment.STATS["cifar10"])
    torch.manual_seed(0)
    net = create_backbone("res_convnet", width=4)
    feats, groups = discarded_group_features(net, cifar_images[:8], stage=1, num_groups=4)
    assert feats.shape == (32, net.feature_dim) and groups.tolist() == [g for g in range(4) for _ in range(8)]
    table = group_recovery(net, cifar_images, num_groups=4, epochs=30)
    assert table["stage"].tolist() == [0, 1, 2] and table["last"].tolist() == [False, False, True]
    last = table[table["last"]]["group_accuracy"].item()
    assert last > 0.9  # after the last stage: the zeros in the pooled vector give the group away
    zeroed = table.set_index("stage")["zeroed"]
    assert zeroed[2] >= 0.25 - 1e-6  # the discarded quarter of the pooled vector is exactly zero
    assert (zeroed[[0, 1]] < zeroed[2] - 0.15).all()  # earlier discards are mixed away by the later convs
    assert table["zeroed_undiscarded"].nunique() == 1 and table["zeroed_undiscarded"].iloc[0] < 0.2
    assert (table["chance"] == 0.25).all()
