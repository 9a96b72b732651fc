"""Paper-shape smoke tests: each notebook's ``paper`` preset, built as its notebook builds it (the paper's backbone,
resolution, heads, optimizer and its options, precision and memory format), takes a couple of optimizer steps on a
handful of real CIFAR-10 images resized to the paper's resolution, through the same study functions the notebook
calls. A shape, dtype or memory-format error in a paper setting shows here, on CPU, not in a reader's Colab.

Only the run length changes (epochs 1, batch 2, a few images, short probes; FKT without the ImageNet download);
every other value is the preset's. The whole file takes well under a minute on one thread.
"""
import pytest
import torch
import torch.nn.functional as F

from ssltutor import train as train_module
from ssltutor.studies import cassle as continual, dogo as dogo_study, internal as internal_study
from ssltutor.studies import rotation as rotation_study
from ssltutor.data import ImageDataset, load
from ssltutor.methods import SSL_METHODS, create
from ssltutor.studies import fkt
from ssltutor.methods.ssl import SwAV
from ssltutor.models import create_backbone
from ssltutor.presets import PAPER_PRESETS, PRESETS, preset, resolve_preset
from ssltutor.train import LARS, fit

CASSLE_METHODS = ("simclr", "byol", "mocov2plus", "barlow_twins", "vicreg", "swav")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for this module (the budget is one minute of one core), the caller's count after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def cifar(shared_data) -> ImageDataset:
    """Two real CIFAR-10 training images of each of the first four classes (8 images, 32 px)."""
    data = load("cifar10", root=shared_data, split="train", size=32)
    keep = torch.cat([torch.nonzero(data.labels == c).squeeze(1)[:2] for c in range(4)])
    return data.subset(keep)


def at_size(data: ImageDataset, size: int, split: str = "train") -> ImageDataset:
    """``data`` resized (bilinear, antialiased) to ``size`` px, as uint8."""
    images = data.images
    if images.shape[-1] != size:
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
        images = images.round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(images, data.labels.clone(), list(data.classes), data.name, split)


@pytest.fixture()
def optimizers(monkeypatch):
    """Every optimizer ``fit`` builds, with its name and options, and how many steps it took."""
    built = []
    original = train_module.make_optimizer

    def spy(groups, name, lr, momentum=0.9, options=None):
        opt = original(groups, name, lr, momentum, options)
        record = {"name": name, "options": dict(options or {}), "optimizer": opt, "steps": 0,
                  "groups": len(opt.param_groups)}
        step = opt.step

        def counted(*args, **kwargs):
            record["steps"] += 1
            return step(*args, **kwargs)

        opt.step = counted
        built.append(record)
        return opt

    monkeypatch.setattr(train_module, "make_optimizer", spy)
    return built


def test_fkt_paper_preset_at_224_px_with_the_codes_optimizers(cifar, optimizers):
    settings = preset("paper", paper="fkt", pretrained=False, epochs=1, pretrain_epochs=1, finetune_epochs=1,
                      batch_size=2)
    assert (settings["backbone"], settings["image_size"]) == ("resnet50", 224)
    images = at_size(cifar, 224)
    data = fkt.Splits(images.subset(torch.arange(4)), at_size(images.subset(torch.arange(4, 6)), 224, "val"),
                      at_size(images.subset(torch.arange(6, 8)), 224, "test"))
    for variant in fkt.VARIANTS:
        result = fkt.run_variant(variant, data, settings, seed=0)
        assert 0.0 <= result.metrics["accuracy"] <= 1.0
        assert result.method.backbone.feature_dim == 2048  # ResNet-50, the standard 224 px stem
    # supervised (joint-training SGD), RT's pretraining (Nesterov SGD) and fine-tuning (finetune.py's LARS), FKT
    names = [(o["name"], o["options"]) for o in optimizers]
    assert names == [("sgd", {}), ("sgd", {"nesterov": True}),
                     ("lars", {"trust_coefficient": 1e-3, "clip": False, "nesterov": True}), ("sgd", {})]
    assert all(o["steps"] == 2 for o in optimizers)
    # the code decays and scales every parameter: one group, no LARS exclusion
    assert all(o["groups"] == 1 for o in optimizers)
    finetune = optimizers[2]["optimizer"]
    assert isinstance(finetune, LARS) and finetune.param_groups[0]["weight_decay"] == 1e-6


def test_rotation_paper_preset_with_swav_multi_crop(cifar, optimizers):
    settings = preset("paper", paper="rotation", batch_size=2, knn_k=3, probe_epochs=2)
    data = at_size(cifar, settings["image_size"])
    train, test = data.subset(torch.arange(0, 8, 2)), at_size(data.subset(torch.arange(1, 8, 2)), 32, "test")
    for base in ("simclr", "byol", "swav"):
        out = rotation_study.run_variant(base, True, train, test, 1, settings, seed=0)
        assert 0.0 <= out.metrics["rot_acc"] <= 1.0 and out.metrics["probe"] is not None
        if base == "swav":
            method = out.method
            assert isinstance(method, SwAV) and method.prototypes.out_features == 3000
            sizes = [v.config.size for v in method.views.views]
            assert sizes == [32, 32] + [16] * 6  # 2 global crops + 6 local ones
    swav = optimizers[-1]
    assert swav["name"] == "lars" and swav["options"] == {"trust_coefficient": 1e-3, "clip": False}
    assert all(o["steps"] == 2 for o in optimizers)


def test_cassle_paper_preset_for_every_method(cifar, optimizers):
    settings = preset("paper", paper="cassle", epochs_per_task=1, batch_size=2, probe_epochs=2)
    train = at_size(cifar, settings["image_size"])
    test = at_size(cifar, settings["image_size"], "test")
    tasks = continual.make_tasks(train, 2, seed=settings["task_seed"])
    for method in CASSLE_METHODS:
        run = continual.run_variant("cassle", train, test, tasks, settings, ssl_method=method, seed=0,
                                    random_baseline=None)
        summary, result = run.metrics, run.result
        assert result.R.shape == (2, 2) and 0.0 <= summary["A"] <= 1.0
        assert [len(h.steps) for h in result.histories] == [2, 2]  # task 2 distils
        assert "distill_loss" in result.histories[1].steps
    summary = continual.run_variant("supervised", train, test, tasks, settings, seed=0, random_baseline=None).metrics
    assert 0.0 <= summary["A"] <= 1.0
    swav = optimizers[2 * CASSLE_METHODS.index("swav")]
    assert swav["name"] == "lars" and swav["groups"] == 1  # the script excludes no bias or norm
    moco = optimizers[2 * CASSLE_METHODS.index("mocov2plus")]
    assert moco["name"] == "sgd"  # the ImageNet-100 script: plain SGD


def test_internal_paper_preset(cifar, optimizers):
    settings = preset("paper", paper="internal", epochs=1, batch_size=2)
    train = at_size(cifar, settings["image_size"]).subset(torch.arange(4))
    test = at_size(cifar, settings["image_size"], "test")
    for variant in ("supervised", "internal", "sla"):
        out = internal_study.run_variant(variant, train, test, settings, seed=0)
        assert all(0.0 <= a <= 1.0 for a in internal_study.accuracy_by_inference(out).values())
    assert [o["name"] for o in optimizers] == ["sgd"] * 3 and all(o["steps"] == 2 for o in optimizers)


def test_dogo_paper_preset_resnet18_with_resnet50_peer(cifar, optimizers):
    settings = preset("paper", paper="dogo", epochs=1, batch_size=2)
    data = at_size(cifar, settings["image_size"]).subset(torch.arange(4))
    for training in dogo_study.TRAININGS:
        method = dogo_study.build(training, settings, dataset="cifar10", seed=0)
        history = dogo_study.train(method, data, settings, seed=0)
        assert history.steps["loss"].notna().all()
    pair_dims = [b.feature_dim for b in method.backbones]
    assert pair_dims == [512, 2048]
    assert [o["name"] for o in optimizers] == ["adam"] * 3 and all(o["steps"] == 2 for o in optimizers)


def test_foundations_paper_preset_methods_at_their_defaults(cifar, optimizers):
    settings = preset("paper", paper="foundations")
    data = at_size(cifar, settings["image_size"]).subset(torch.arange(4))
    for name in SSL_METHODS:
        torch.manual_seed(0)
        method = create(name, create_backbone(settings["backbone"]), dataset="cifar10",
                        image_size=settings["image_size"], head_scale=settings["head_scale"],
                        **settings["method_options"].get(name, {}))
        fit(method, data, epochs=1, batch_size=2, optimizer=settings["optimizer"], lr=settings["lr"],
            weight_decay=settings["weight_decay"], precision=settings["precision"],
            channels_last=settings["channels_last"], progress=False)
    assert all(o["name"] == "lars" and o["steps"] == 2 for o in optimizers)


# ---------------------------------------------------------------------------------------------------------------
# The colab preset and "auto"
# ---------------------------------------------------------------------------------------------------------------
def test_colab_preset_sits_between_cpu_and_paper():
    assert list(PRESETS) == ["smoke", "cpu", "colab", "paper"]
    for paper in PAPER_PRESETS:
        settings = preset("colab", paper=paper)
        assert settings["image_size"] == 32 and settings["precision"] == "fp16"  # a T4 has no bf16 tensor cores
        if paper != "dogo":
            assert settings["backbone"] == "resnet18"
        assert settings["epochs"] < preset("paper", paper=paper)["epochs"]
    dogo = preset("colab", paper="dogo")
    assert (dogo["model_small"], dogo["model_large"]) == ("resnet18", "resnet50")
    cassle = preset("colab", paper="cassle")
    assert preset("cpu", paper="cassle")["epochs_per_task"] < cassle["epochs_per_task"] < 500


def test_auto_is_colab_only_in_a_colab_gpu_session(monkeypatch):
    import sys
    import types

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset("auto") == "cpu"  # a workstation GPU: the book and the tests keep the cpu size
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert resolve_preset("auto") == "colab" and preset("auto", paper="rotation")["epoch_budgets"] == (4, 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_preset("auto") == "cpu"  # Colab without a GPU runtime
    assert resolve_preset("paper") == "paper"
    with pytest.raises(ValueError, match="choose one of smoke, cpu, colab, paper, auto"):
        preset("huge")
