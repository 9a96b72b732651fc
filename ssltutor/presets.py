"""Named run sizes in one place.

* ``smoke``: seconds, for tests and CI (tiny convnet, a few hundred images, one or two epochs);
* ``cpu``: minutes on a 2-core laptop (small convnet, 32 px, the real subsets or the embedded digits);
* ``colab``: about an hour per paper notebook on one Colab T4 (ResNet-18 with the CIFAR stem, 32 px, 20,000
  training images, fp16): the papers' networks on a free GPU, with short schedules;
* ``paper``: the paper's setting where it is known (ResNet, full resolution, hundreds of epochs): for a GPU.

``preset(name, **overrides)`` returns a plain dict; paper notebooks take the shared keys and add their own from
``PAPER_PRESETS[paper][name]`` (each value with its source in a comment). The name ``"auto"`` (the default of
the notebooks opened from the book's Colab button) resolves to ``colab`` in a Colab session with a GPU and to
``cpu`` everywhere else (:func:`resolve_preset`).

How ``colab`` is sized (an estimate from published figures, no GPU measurement: none was available when it was
written; ``python -m ssltutor.bench gpu`` measures the real numbers). Lambda Labs timed the DAWNBench ResNet-9 at
131 s for 24 epochs of CIFAR-10 in fp16 on an RTX 2080 Ti ("ResNet9: train to 94% CIFAR10 accuracy in 100 seconds
with a single Turing GPU"), ~9,200 training images/s. A T4 is the same Turing generation at 70 W with about half
the memory bandwidth (320 vs 616 GB/s): ~0.5x, ~4,600 images/s. ResNet-18 with the CIFAR stem costs ~1.5x
ResNet-9's multiply-adds (0.56 vs ~0.38 GMAC per 32 px image): ~3,000 images/s; our on-device augmentation and
step are less tuned than that benchmark, so the budget is **2,000 backbone passes/s** (forward + backward of one
32 px image through ResNet-18), i.e. ~7.2 M passes per hour. Each notebook's sizes below divide that by what its
variants cost per training image and epoch (a SimCLR step = 2 passes, BYOL ~2.7, a rotation auxiliary +2, a
forward-only pass ~1/3).
"""
from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass, field

# ------------------------------------------------------------------------------------------------------------------
# The keys a preset may set, each with its one default. ``preset()`` merges the named sizes below into these and
# returns every key, so no study falls back to a default of its own (``settings.get(key, default)``).
# ------------------------------------------------------------------------------------------------------------------
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class Settings:
    """The shared keys (the run sizes of :data:`PRESETS`) and the ``fit`` options every study passes on.

    The fit keys default to ``ssltutor.train.fit``'s own defaults; ``method_options`` are constructor options per
    method name and ``method_overrides`` fit options per method name (a method's own lr, LARS options)."""

    backbone: str = "small_convnet"
    width: int | None = 32
    head_scale: float = 1.0
    image_size: int = 32
    epochs: int = 1
    batch_size: int = 256
    max_train: int | None = None
    max_test: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 0
    min_lr: float = 0.0
    schedule: str = "cosine"
    optimizer_options: dict | None = None
    exclude_bias_norm: bool | None = None
    probe_epochs: int = 100
    knn_k: int = 20
    crop_scale: tuple[float, float] = (0.08, 1.0)
    method_options: dict = field(default_factory=dict)
    method_overrides: dict = field(default_factory=dict)
    # {dataset: {key: value}}: merged last (before explicit overrides) by ``preset(..., dataset=name)``; the one
    # place where a dataset changes a preset (the 8 x 8 digits at 16 px, fewer labels where digits is too easy)
    dataset_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass
class FKTSettings(Settings):
    """Paper 000 (FKT). ``pretrain_*`` / ``finetune_*``: RT's two stages; None takes the plain key."""

    ssl_weight: float = 1.0
    temperature: float = 0.5
    similarity: str = "cosine"
    classifier_input: str = "clean"
    color_jitter: bool = False
    hflip: bool = False
    stats: str = "dataset"
    supervised_augment: str = "none"
    finetune_augment: str = "none"
    val_fraction: float = 0.15
    pretrained: bool = False
    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    pretrain_epochs: int | None = None
    pretrain_lr: float | None = None
    pretrain_optimizer: str | None = None
    pretrain_weight_decay: float | None = None
    pretrain_optimizer_options: dict | None = None
    pretrain_schedule: str | None = None
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    finetune_optimizer: str | None = None
    finetune_weight_decay: float | None = None
    finetune_optimizer_options: dict | None = None
    finetune_schedule: str | None = None


@dataclass
class InternalSettings(Settings):
    """Paper 001 (internal pretext task)."""

    stage: int = -2
    num_groups: int = 4
    include_identity: bool = False
    grouping: str = "contiguous"
    rescale: bool = False
    labelled_fraction: float = 1.0
    ablation_groups: tuple[int, ...] = (2, 4, 8)
    ablation_stages: tuple[int, ...] | None = None
    timing_repeats: int = 5


@dataclass
class RotationSettings(Settings):
    """Paper 002 (EffSSL)."""

    rotation_weight: float = 0.1
    rotated_views: tuple[int, ...] = (0, 1)
    moco_queue_size: int = 4096
    knn_every: int = 1
    epoch_budgets: tuple[int, ...] = (1,)
    label_fraction: float = 1.0


@dataclass
class CaSSLeSettings(Settings):
    """Paper 003 (CaSSLe)."""

    epochs_per_task: int | None = None
    distill_lambda: float | None = None
    pred_hidden: int | None = None
    frozen_bn_train: bool = False
    reset_predictor: bool = True
    task_seed: int = 0
    probe_optimizer: str = "adam"
    probe_lr: float | None = None
    probe_schedule: str = "cosine"
    probe_augment: str = "none"
    probe_augment_copies: int | None = None
    ssl_options: dict = field(default_factory=dict)
    stem_padding: int = 1


@dataclass
class DoGoSettings(Settings):
    """Paper 004 (DoGo)."""

    model_small: str = "small_convnet8"
    model_large: str = "small_convnet16"
    objective: str = "simclr"
    peer_objective: str | None = None
    temperature: float = 0.5
    kd_temperature: float = 0.1
    kl_reduction: str = "batchmean"
    lambda1: float = 100 / 256
    lambda2: float = 1 / 256
    label_fractions: tuple[float, ...] = (1.0,)
    noise_rates: tuple[float, ...] = ()
    probe_val_fraction: float = 0.15


@dataclass
class FoundationsSettings(Settings):
    """The foundations chapter (notebook 01)."""

    label_fraction: float = 1.0
    embedding_method: str = "tsne"


@dataclass
class LearnSettings(Settings):
    """Laptop-scale learning (``ssltutor.learn``): per-method recipes in ``methods``."""

    view_size: int | None = None
    methods: dict = field(default_factory=dict)


SCHEMAS: dict[str | None, type[Settings]] = {None: Settings, "fkt": FKTSettings, "internal": InternalSettings,
                                             "rotation": RotationSettings, "cassle": CaSSLeSettings,
                                             "dogo": DoGoSettings, "foundations": FoundationsSettings,
                                             "learn": LearnSettings}


PRESETS: dict[str, dict] = {
    "smoke": dict(backbone="small_convnet", width=8, head_scale=1 / 32, image_size=32, epochs=1, batch_size=64,
                  max_train=256, max_test=256, precision="fp32", channels_last=False, optimizer="sgd", lr=0.05,
                  weight_decay=5e-4, warmup_epochs=0, probe_epochs=20, knn_k=20, crop_scale=(0.2, 1.0)),
    # Adam 1e-3 and crops of 20-100 % of the image: measured on the CIFAR-10 subset (3,000 images, 5 epochs,
    # width 16), SimCLR's kNN accuracy went 0.35 (random init) -> 0.39 with these, -> 0.26 with SGD lr 0.3 and the
    # paper's 8-100 % crops, which need far longer schedules than a CPU run allows. res_convnet(16) (airbench's
    # layout: pool early, residual convs after pooling) instead of small_convnet(32): on 20,000 CIFAR-10 images and
    # 2 cores it trains ~2.7x faster per image and learns more per CPU-second (book page "SSL on a laptop",
    # results/laptop); heads at 1/4 of the papers' widths (512 hidden for a 128-d backbone).
    "cpu": dict(backbone="res_convnet", width=16, head_scale=1 / 4, image_size=32, epochs=15, batch_size=128,
                max_train=None, max_test=None, precision="bf16", channels_last=True, optimizer="adam", lr=1e-3,
                weight_decay=1e-6, warmup_epochs=0, probe_epochs=100, knn_k=50, crop_scale=(0.2, 1.0)),
    # ours: the paper networks at 32 px, short schedules (module docstring: ~7.2 M ResNet-18 passes per T4 hour).
    # fp16 with the grad scaler because the T4 (Turing) has no bf16 tensor cores; LARS 0.4 / wd 1e-5 / warmup
    # as solo-learn's CIFAR SimCLR, warmup cut to 2 epochs for 16-40 epoch runs
    "colab": dict(backbone="resnet18", width=None, head_scale=1.0, image_size=32, epochs=30, batch_size=256,
                  max_train=20_000, max_test=None, precision="fp16", channels_last=True, optimizer="lars", lr=0.4,
                  weight_decay=1e-5, warmup_epochs=2, probe_epochs=50, knn_k=200, crop_scale=(0.08, 1.0)),
    "paper": dict(backbone="resnet18", width=None, head_scale=1.0, image_size=32, epochs=500, batch_size=256,
                  max_train=None, max_test=None, precision="bf16", channels_last=True, optimizer="lars", lr=0.4,
                  weight_decay=1e-5, warmup_epochs=10, probe_epochs=100, knn_k=200, crop_scale=(0.08, 1.0)),
}

# Paper-specific additions, filled in by each paper's method module (see ssltutor/methods/*.py).
PAPER_PRESETS: dict[str, dict[str, dict]] = {}

# Paper 000, FKT (ssltutor/methods/fkt.py, notebooks/02). [code] = the released code (FKT, arXiv 2304.01354); the rest
# are ours, for the reason given.
_FKT_COMMON = dict(
    ssl_weight=1.0, temperature=0.5,             # [code] L = CE + NT-Xent (plain sum), tau 0.5
    similarity="cosine",                         # paper formula; [code] computes the raw dot product ("dot")
    classifier_input="clean",                    # [code] the classifier reads the un-augmented image
    color_jitter=False, hflip=False,             # [code] both defined but never applied (FKT, arXiv 2304.01354)
    stats="dataset",                             # ours: each dataset's mean/std ([code]: fundus stats, "fkt_code")
    supervised_augment="none",                   # ours: supervised-only = FKT's classifier input, no SSL term
    finetune_augment="none",                     # [code] finetune.py: Resize + CenterCrop, no augmentation
    val_fraction=0.15,                           # ours: model selection on 15 % of train ([code] selects on test)
    pretrained=False,                            # ours: offline ([code] ImageNet weights; set True to reproduce)
    momentum=0.9,                                # [code] SGD momentum 0.9 (all three scripts)
    schedule="cosine",                           # ours for smoke/cpu: short runs from random init ([code]: constant)
    fractions=(0.1, 0.25, 1.0),                  # ours: the labelled-fraction sweep of the notebook
)
PAPER_PRESETS["fkt"] = {
    "smoke": dict(_FKT_COMMON, epochs=1, pretrain_epochs=1, finetune_epochs=1,  # ours: seconds
                  pretrain_lr=0.05, finetune_lr=0.05, pretrain_optimizer="sgd", finetune_optimizer="sgd",
                  pretrain_weight_decay=5e-4, finetune_weight_decay=5e-4),
    "cpu": dict(_FKT_COMMON, width=16,           # ours: a 128-d convnet, ~2 CPU-minutes per dataset for all variants
                max_train=600, epochs=15, batch_size=32,  # ours: small data (the paper's premise), enough SGD steps
                lr=0.05, weight_decay=5e-4, warmup_epochs=1,  # ours: random init needs far more than the code's 2.5e-4
                pretrain_epochs=15, finetune_epochs=15,  # [code] RT trains twice as long: 101 + 100 epochs vs 100
                pretrain_lr=0.05, finetune_lr=0.05, pretrain_optimizer="sgd", finetune_optimizer="sgd",
                pretrain_weight_decay=5e-4, finetune_weight_decay=5e-4,
                # ours: on CIFAR-10 the labelled-fraction sweep of the whole pool (20,000 images: 1 % = 170 after
                # the validation split), 10 epochs: the notebook took 42 minutes on 2 cores (seed 0, 2 threads)
                dataset_overrides={"cifar10": dict(max_train=None, epochs=10, pretrain_epochs=10,
                                                   finetune_epochs=10, fractions=(0.01, 0.05, 0.2, 1.0))}),
    # ours: ResNet-18 (CIFAR stem) at 32 px from random init ([code] ImageNet init needs the 224 px stem), the
    # usual supervised CIFAR recipe (SGD 0.1, wd 5e-4, cosine) for all three stages; per epoch on the 17,000 images
    # left after the validation split: supervised 1 + FKT 3 (two views + the clean image) + RT 2 + 1 passes, the
    # 10 % / 25 % sweep another 0.35x of that: ~160 k passes/epoch, 30 epochs ~4.8 M passes + per-epoch scoring
    "colab": dict(_FKT_COMMON, epochs=30, pretrain_epochs=30, finetune_epochs=30, optimizer="sgd", lr=0.1,
                  weight_decay=5e-4, warmup_epochs=1, pretrain_optimizer="sgd", finetune_optimizer="sgd",
                  pretrain_lr=0.1, finetune_lr=0.1, pretrain_weight_decay=5e-4, finetune_weight_decay=5e-4),
    "paper": dict(_FKT_COMMON, backbone="resnet50", width=None, image_size=224,  # paper: ResNet-50 at 224 px
                  batch_size=256, epochs=100,    # [code] batch 256, 100 epochs, drop_last
                  optimizer="sgd", lr=2.5e-4, weight_decay=1e-6,  # [code] joint_train.py: SGD lr 2.5e-4, wd 1e-6
                  schedule="constant", warmup_epochs=0,  # [code] no schedule, no warmup
                  pretrained=True, stats="fkt_code",  # [code] ImageNet init (a download), fundus stats for all
                  exclude_bias_norm=False,  # [code] all three scripts: one group, every parameter decayed
                  pretrain_epochs=101, pretrain_optimizer="sgd", pretrain_lr=5e-4,  # [code] pretrain.py
                  pretrain_optimizer_options={"nesterov": True},  # [code] pretrain.py: SGD(nesterov=True)
                  pretrain_weight_decay=5e-4, pretrain_schedule="constant",  # [code] cosine T_max=1000 ~ flat
                  finetune_epochs=100, finetune_optimizer="lars", finetune_lr=0.005,  # [code] finetune.py: LARS
                  # [code] finetune.py's own LARS: trust 1e-3, no clipping, Nesterov, every parameter scaled
                  finetune_optimizer_options={"trust_coefficient": 1e-3, "clip": False, "nesterov": True},
                  finetune_weight_decay=1e-6, finetune_schedule="constant"),  # [code] cosine T_max=1000 ~ flat
}

# Paper 004, DoGo (ssltutor/methods/dogo.py, notebooks/06). Values marked [code] come from the official `dogo` branch
# (DoGo, arXiv 2104.09866); the rest are ours, for the reason given.
_DOGO_COMMON = dict(
    objective="simclr", peer_objective=None,     # [code] SimCLR for both models (template: SimCLR / SimSiam also)
    temperature=0.5,                             # [code] NT-Xent tau, hard-coded 0.5
    kd_temperature=0.1,                          # [code] KL_temperature 0.1
    kl_reduction="batchmean", lambda1=100 / 256, lambda2=1 / 256,  # ours: the code's [100, 1] per row at batch 256
    optimizer="adam", weight_decay=1e-6,         # [code] Adam, wd 1e-6
    schedule="constant", warmup_epochs=0,        # [code] the cosine scheduler's eta_min equals the base lr
    label_fractions=(1.0, 0.1, 0.01),            # paper: limited labels (no code); 1 % and 10 % as the issue asks
    noise_rates=(0.2, 0.4),                      # paper: noisy labels (no code); symmetric 20 % / 40 %
    probe_val_fraction=0.15,                     # [code] linear.py holds out 15 % for epoch selection
)
PAPER_PRESETS["dogo"] = {
    # ours: seconds on any dataset
    "smoke": dict(_DOGO_COMMON, model_small="small_convnet4", model_large="small_convnet8", lr=1e-3),
    # ours: a small convnet with a twice-as-wide peer (ResNet-18/50: 2x width, 4x feature dim); Adam 1e-3 and
    # crops of 20-100 % (the shared cpu preset) because 10 epochs are 1 % of the paper's 1000; 10 epochs keep the
    # digits notebook near 60-90 s on 2 cores
    "cpu": dict(_DOGO_COMMON, model_small="res_convnet8", model_large="res_convnet16", lr=1e-3, epochs=10,
                precision="bf16"),
    # ours: the paper's pair (ResNet-18 with a ResNet-50 peer, CIFAR stems, 32 px) and Adam 3e-4 [code], 25
    # epochs: small alone 2 + large alone ~4.6 + the pair ~6.6 passes per image and epoch (ResNet-50 ~2.3x
    # ResNet-18), ~6.6 M passes; batch 128 keeps two ResNet-50 views within a T4's 16 GB
    "colab": dict(_DOGO_COMMON, model_small="resnet18", model_large="resnet50", lr=3e-4, batch_size=128,
                  epochs=25),
    # [code] ResNet-18 with a ResNet-50 peer, Adam 3e-4, batch 256, 1000 epochs (main:config/simclr.yaml), the
    # code's KL ("mean", divides by B*B) and weights [100, 1]; probe: Adam, 100 epochs
    "paper": dict(_DOGO_COMMON, model_small="resnet18", model_large="resnet50", lr=3e-4, batch_size=256,
                  epochs=1000, head_scale=1.0, kl_reduction="mean", lambda1=100.0, lambda2=1.0, probe_epochs=100),
}


# Paper 002, EffSSL (ssltutor/methods/rotation.py, ssltutor/studies/rotation.py, notebooks/04). [code] = the released
# SwAV+rotation code (EffSSL, arXiv 2210.09866); the rest are ours, for the reason given.
# [code] EffSSL's SwAV multi-crop: 2 global crops at scale 0.14-1 + 6 local crops at 0.05-0.14 (96 px at 224 px).
# Ours: at 32 px the local crops are 16 px (96/224 of 32 px is 14; 16 keeps whole feature maps through ResNet-18)
_SWAV_MULTI_CROP = dict(crop_scale=(0.14, 1.0), num_local_crops=6, local_crop_size=16, local_crop_scale=(0.05, 0.14))
_ROTATION_COMMON = dict(
    rotation_weight=0.1,        # [code] rot_wt 0.1, the two CE terms summed
    rotated_views=(0, 1),       # [code] both global crops, independent angles
    moco_queue_size=4096,       # ours: MoCo's 65,536 keys exceed our subsets (solo-learn CIFAR: 4096)
    knn_every=1,                # ours: the convergence-speed curve needs kNN after every epoch
    # ours: random-init features already reach ~90 % kNN on digits with every label, leaving SSL no room to show:
    # there kNN and the probe get 10 % of the labels
    dataset_overrides={"digits": {"label_fraction": 0.1}},
)
PAPER_PRESETS["rotation"] = {
    # ours: seconds on any dataset
    "smoke": dict(_ROTATION_COMMON, epoch_budgets=(1, 2)),
    # ours: width 16 (not 32) because the auxiliary doubles the step cost and the notebook trains 2 methods x 2
    # variants x 2 budgets in ~60-90 s on digits; 1 and 4 epochs = the "few epochs" regime the paper targets, at
    # the cost a laptop affords (CIFAR-10 subset: 23 and 92 steps)
    "cpu": dict(_ROTATION_COMMON, width=16, epoch_budgets=(1, 4)),
    # ours: the notebook's SimCLR and BYOL, each without and with rotation: 2 + 4 + 2.7 + 4.7 = 13.3 passes per
    # image and epoch, budgets 4 + 16 epochs on 20,000 images ~5.3 M passes, plus kNN after every epoch ~0.8 M;
    # SwAV (base_methods=["swav"]) runs the paper's multi-crop, at 32 px
    "colab": dict(_ROTATION_COMMON, epoch_budgets=(4, 16), method_options={"swav": dict(_SWAV_MULTI_CROP)}),
    # paper: 50 epochs is the released ImageNet SwAV+rotation script; 200 = a 4x longer run for the comparison.
    # The paper's CIFAR epoch sweep could not be read (EffSSL, arXiv 2210.09866) [unverified]. SwAV as the released run
    # (scripts/swav_rotnet_50ep_bs1024_withmc.sh): multi-crop, 3000 prototypes, no queue, SwAV's LARS (trust
    # 1e-3, no clipping), base lr 1.2 at batch 1024 -> 0.3 at 256 (linear scaling), final lr 0.0012 -> 3e-4,
    # wd 1e-6. Ours: warmup from 0 (the script: from 0.3); prototypes frozen 1 epoch (the script: 313 steps)
    "paper": dict(_ROTATION_COMMON, epoch_budgets=(50, 200),
                  method_options={"swav": dict(_SWAV_MULTI_CROP, num_prototypes=3000, freeze_prototypes_epochs=1)},
                  method_overrides={"swav": {"lr": 0.3, "min_lr": 3e-4, "weight_decay": 1e-6,
                                             "optimizer_options": {"trust_coefficient": 1e-3, "clip": False}}}),
}


# Paper 001, internal pretext task (ssltutor/methods/internal.py, ssltutor/studies/internal.py, notebooks/03). No code
# is public and the PDF was not available (arXiv 2106.04921): every value is ours unless marked [SLA code].
_INTERNAL_COMMON = dict(
    stage=-2,                   # ours: after the stage before the last: discarding after the last stage acts on the
                                # pooled vector, where the linear head reads the discarded group off the zeros and the
                                # backbone gets no pretext signal (notebook 03 measures every stage)
    num_groups=4,               # ours: M = 4 mirrors SLA's 4 rotations (our choice)
    include_identity=False,     # ours: the abstract names only discarded copies; True is an option
    grouping="contiguous",      # ours: equal contiguous groups (at random init any fixed partition is equivalent)
    rescale=False,              # ours: "discard" read literally as zeroing; C/kept rescaling is an option
    ablation_groups=(2, 4, 8),  # ours: M for the ablation (at the default stage)
    ablation_stages=None,       # ours: every stage of the backbone
)
# ours: supervised digits is ~99 %; 20 % of the labels leaves room (smoke and cpu; the GPU presets train on all)
_INTERNAL_DIGITS = {"digits": {"labelled_fraction": 0.2}}
# ours: 20,000 CIFAR-10 images: batch 128 (res_convnet(8), bf16, 2 threads: 3,513 img/s vs 2,337 at batch 32) and
# 10 epochs: the notebook's 9 models took 20 minutes (seed 0, one thread beside another run)
_INTERNAL_CPU_DATASETS = {**_INTERNAL_DIGITS, "cifar10": {"batch_size": 128, "epochs": 10}}
PAPER_PRESETS["internal"] = {
    # ours: seconds on any dataset
    "smoke": dict(_INTERNAL_COMMON, ablation_stages=(2, 3), ablation_groups=(2, 4),
                  dataset_overrides=_INTERNAL_DIGITS),
    # ours: width 8 and batch 32 because SLA's variant runs 4 rotations (4x the step) and the notebook trains 7
    # models in ~60-90 s on digits; 20 epochs because joint labels converge more slowly than plain labels
    "cpu": dict(_INTERNAL_COMMON, width=8, batch_size=32, epochs=20, dataset_overrides=_INTERNAL_CPU_DATASETS),
    # ours: the paper preset's recipe for 18 epochs: supervised 1 + internal ~1.2 + SLA 4 (four rotations) + the
    # ablation's 6 more internal runs ~12 passes per image and epoch, ~18 x 20,000 x 18 ~6.5 M passes
    "colab": dict(_INTERNAL_COMMON, optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=128, epochs=18,
                  warmup_epochs=0),
    # ours: the usual supervised CIFAR recipe (SGD 0.1, momentum 0.9, wd 5e-4, batch 128, 200 epochs, cosine) with
    # ResNet-18 (CIFAR stem); the paper's own training settings could not be read (arXiv 2106.04921)
    "paper": dict(_INTERNAL_COMMON, backbone="resnet18", width=None, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                  batch_size=128, epochs=200, warmup_epochs=0),
}

# Paper 003, CaSSLe (ssltutor/methods/cassle.py, ssltutor/studies/cassle.py, notebooks/05). [code] = DonkeyShot21/cassle
# (CaSSLe, arXiv 2112.04215); the rest are ours, for the reason given.
_CASSLE_COMMON = dict(
    epochs_per_task=None,       # set per preset below
    distill_lambda=None,        # [code] per distiller: 25 for VICReg's MSE, 1 otherwise (methods/cassle.py)
    pred_hidden=None,           # [code] 2048, scaled by head_scale like the projectors
    frozen_bn_train=False,      # ours: frozen copy in eval mode ([code] leaves it in train mode; True reproduces it)
    reset_predictor=True,       # paper/issue: a new g per task ([code] carries it over from task 2 on)
    task_seed=0,                # ours: one class order for every training seed ([code] randperm after seed 5)
    probe_optimizer="adam", probe_lr=None, probe_schedule="cosine",  # ours: Adam on standardised features
    ssl_options={},             # per-method constructor options
    method_overrides={},        # per-method fit options (lr, weight_decay)
    stem_padding=1,
)
# ours: small-data sizes for the methods whose defaults assume ImageNet-scale data
# ours: the digits are 8 x 8 originals: 16 px keeps every pixel at 1/4 of the cost of 32 (every preset but paper)
_CASSLE_DIGITS = {"digits": {"image_size": 16}}
_CASSLE_SMALL_DATA = {"mocov2plus": {"queue_size": 512}, "swav": {"num_prototypes": 100}}
# [code] bash_files/continual/cifar/*.sh and the methods' code, where they differ from our method defaults
_CASSLE_CODE_OPTIONS = {
    "simclr": {"proj_out": 256},                 # --output_dim 256 (our SimCLR default: the SimCLR paper's 128)
    "swav": {"queue_size": 3840, "queue_start_epoch": 50,  # --queue_size 3840 --epoch_queue_starts 50
             "prototype_norm": "weight_norm"},   # methods/swav.py: weight_norm prototypes (ours: unit rows)
    "vicreg": {"crop_scale": (0.2, 1.0),         # --min_scale 0.2
               "view_options": {"solarize_p": (0.1, 0.1)},  # --solarization_prob 0.1, both views
               "halve_variance": False},         # losses/vicreg.py sums the two views' variance terms
}
_CASSLE_CODE_FIT = {  # per-method fit options ([code] the same scripts)
    "simclr": {"lr": 0.4, "weight_decay": 1e-5}, "byol": {"lr": 1.0, "weight_decay": 1e-5},
    "barlow_twins": {"lr": 0.3, "weight_decay": 1e-4}, "vicreg": {"lr": 0.3, "weight_decay": 1e-4},
    # swav.sh: --min_lr 0.0006 and no --exclude_bias_n_norm: every parameter decayed and LARS-scaled
    "swav": {"lr": 0.6, "weight_decay": 1e-6, "min_lr": 6e-4, "exclude_bias_norm": False},
    "mocov2plus": {"lr": 0.4, "weight_decay": 1e-4, "optimizer": "sgd", "warmup_epochs": 0},
}
PAPER_PRESETS["cassle"] = {
    # ours: seconds on any dataset (5 tasks of ~50 images need a small batch); the cpu optimiser, because SGD 0.05
    # diverges on VICReg's 25 x MSE distillation when BN statistics have had only a few steps to settle
    "smoke": dict(_CASSLE_COMMON, epochs_per_task=1, batch_size=16, probe_epochs=10, optimizer="adam", lr=1e-3,
                  weight_decay=1e-6,
                  ssl_options={"mocov2plus": {"queue_size": 64}, "swav": {"num_prototypes": 30}},
                  dataset_overrides=_CASSLE_DIGITS),
    # ours: width 16 and batch 64 because every variant trains 5 tasks in sequence and the notebook runs four of
    # them in ~60-90 s on digits (width 16 is ~3x faster than 32 on one core); 6 epochs per task (the paper: 500)
    # keep 3 seeds x 4 runs on the CIFAR-10 subset near 25 CPU-minutes; the shared cpu optimiser (Adam 1e-3, crops
    # 20-100 %) for every method
    # on 20,000 CIFAR-10 images (5 tasks of 4,000) batch 128 (res_convnet(16), bf16, 2 threads: 2,038 img/s vs
    # 1,412 at batch 32; 64 not timed): the notebook with 3 SSL methods took 51 minutes (seed 0, one thread)
    "cpu": dict(_CASSLE_COMMON, width=16, batch_size=64, epochs_per_task=6, ssl_options=_CASSLE_SMALL_DATA,
                dataset_overrides={**_CASSLE_DIGITS, "cifar10": {"batch_size": 128}}),
    # ours: the paper preset's methods, optimiser and per-method lr / wd for 40 epochs per task on 20,000 images;
    # fine-tune 2 + CaSSLe ~2.5 (+ the frozen forwards) + supervised 1 + joint 2 passes per image and epoch,
    # ~6 M passes; probes on clean features (the paper's crop + flip probe re-extracts features every epoch,
    # ~10 M passes for the notebook's 17 probes)
    "colab": dict(_CASSLE_COMMON, epochs_per_task=40, stem_padding=2, ssl_options=_CASSLE_CODE_OPTIONS,
                  method_overrides=_CASSLE_CODE_FIT, probe_optimizer="sgd", probe_lr=1.0, probe_schedule="step",
                  probe_epochs=50, dataset_overrides=_CASSLE_DIGITS),
    # [code] CIFAR-100 scripts: ResNet-18 (CIFAR stem, padding 2), 500 epochs per task, batch 256, LARS, warmup 10,
    # per-method lr / wd (bash_files/continual/cifar/*.sh); MoCo v2+ from the ImageNet-100 script (no CIFAR one);
    # linear probe SGD lr 1.0, 100 epochs, x0.1 at 60 % and 80 %, trained on RandomResizedCrop(0.08-1) + flip
    # views of the train images, a new view every epoch (main_linear.py)
    "paper": dict(_CASSLE_COMMON, backbone="resnet18", width=None, head_scale=1.0, stem_padding=2,
                  epochs_per_task=500, batch_size=256, optimizer="lars", warmup_epochs=10, lr=0.4,
                  probe_optimizer="sgd", probe_lr=1.0, probe_schedule="step", probe_epochs=100,
                  probe_augment="crop_flip", ssl_options=_CASSLE_CODE_OPTIONS, method_overrides=_CASSLE_CODE_FIT),
}


# Foundations (notebooks/01_ssl_foundations.ipynb): the seven SSL objectives side by side, one short run each plus a
# supervised reference and SimSiam without stop-gradient. Values are ours unless marked [solo-learn] (its CIFAR
# scripts, the common reference for the seven methods). ``dataset_overrides`` are merged last, per dataset.
_FOUNDATIONS_OPTIONS = dict(
    mocov2plus=dict(queue_size=256),             # ours: 65,536 keys [paper] exceed every subset; below the smallest
                                                 # train split (APTOS, 280 images), so no image meets its own stale key
    swav=dict(num_prototypes=100, freeze_prototypes_epochs=1,  # ours: 3,000 [paper] are far too many for 10 classes
              queue_size=256, queue_start_epoch=1),  # and ~100 steps; batch 64 < 256 needs the queue (SwAV paper)
)
PAPER_PRESETS["foundations"] = {
    # ours: seconds on any dataset; PCA instead of t-SNE for the embedding map
    "smoke": dict(label_fraction=0.1, embedding_method="pca", dataset_overrides={},
                  method_options=dict(_FOUNDATIONS_OPTIONS, mocov2plus=dict(queue_size=128))),
    # ours: 9 runs in ~60-90 s on 2 cores on digits: width 8, batch 64, 6 epochs (126 steps) of the shared Adam 1e-3
    # (2e-3 did worse; SGD at 0.05 barely moves NT-Xent in 100 steps); probe on 10 % of the labels because
    # random-init features already reach ~90 % kNN on digits with all labels; digits at 16 px (8 x 8 at the source:
    # no detail lost, 1/4 of the cost of 32 px) with 50-100 % crops (measured on digits, short Adam runs: with 8-100 %
    # crops most methods ended below the random-init network on the probe, with 30-100 % 0-7 points above it, with
    # 50-100 % 5-10 points above it)
    "cpu": dict(width=8, batch_size=64, epochs=6, label_fraction=0.1, embedding_method="tsne",
                method_options=_FOUNDATIONS_OPTIONS,
                dataset_overrides=dict(digits=dict(image_size=16, crop_scale=(0.5, 1.0)))),
    # ours: 9 runs (seven objectives, supervised, SimSiam without stop-gradient) of ~2.2 passes per image and
    # epoch, 15 epochs on 20,000 images ~6 M passes; the queue and prototypes sized for 20,000 images
    "colab": dict(epochs=15, label_fraction=1.0, embedding_method="tsne", dataset_overrides={},
                  method_options=dict(mocov2plus=dict(queue_size=4096), swav=dict(num_prototypes=300))),
    # [solo-learn] ResNet-18 (CIFAR stem), 1000 epochs, linear probe on all labels; the methods' own defaults
    # (the papers: queue 65,536, 3,000 prototypes); optimizer and lr from the shared paper preset (LARS 0.4)
    "paper": dict(epochs=1000, label_fraction=1.0, embedding_method="tsne", method_options={}, dataset_overrides={}),
}


# Laptop-scale learning (ssltutor/learn.py, `python -m ssltutor.bench learn`, the book's "SSL on a laptop" page):
# each objective's recipe at the cpu preset, measured on 20,000 CIFAR-10 train images on 2 CPU cores (README,
# results/laptop). Everything here is ours: short runs need their own values (the papers' are for hundreds of GPU
# epochs). ``options`` go to the method's constructor.
_PROJ = dict(proj_hidden=512, proj_out=128)     # heads scaled to a 128-d backbone: 4x wide hidden, 128-d out
_WIDE = dict(proj_hidden=512, proj_out=512)     # the redundancy-reduction objectives want a wide embedding
LEARN_CPU_RECIPES: dict[str, dict] = {
    # width 32 for the supervised reference: one view per image leaves room for a wider net in the same time
    # (25 epochs on 32 px views took over 600 s: 24 px views as for SSL, evaluated at 32 px)
    # 26 epochs reached 0.839 in 421 s (16.2 s per epoch): 34 epochs fit the 600 s budget
    "supervised": dict(width=32, epochs=34, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                       options=dict(label_smoothing=0.1)),
    # Adam 1e-3 beat Adam 2e-3 and LARS 0.6 (warmup 1 epoch) on SimCLR, 8 epochs: probe 0.515 / 0.498 / 0.475
    "simclr": dict(epochs=30, optimizer="adam", lr=1e-3, weight_decay=1e-6, options=dict(_PROJ, temperature=0.2)),
    # BYOL, 8 epochs at 24 px: Adam 1e-3 probe 0.387 (32 px), SGD 0.06 + wd 5e-4 0.382, tau 0.9 or lr 3e-3 (6 epochs)
    # 0.375 / 0.321: all below random init (0.408); a faster predictor: predictor_lr_scale 10: 0.425, 30: 0.404
    "byol": dict(epochs=25, optimizer="adam", lr=1e-3, weight_decay=1e-6,
                 options=dict(_PROJ, pred_hidden=512, predictor_lr_scale=10.0)),
    "mocov2plus": dict(epochs=25, optimizer="adam", lr=1e-3, weight_decay=1e-6,
                       options=dict(_PROJ, queue_size=4096, temperature=0.2)),
    # SimSiam, 8 epochs: below random init with one learning rate (probe 0.363; SGD 0.06 + wd 5e-4: 0.291), above
    # it with a faster predictor: predictor_lr_scale 10: 0.400, 30: 0.431 (random init 0.408, 30-epoch probe)
    "simsiam": dict(epochs=27, optimizer="adam", lr=1e-3, weight_decay=1e-6,
                    options=dict(proj_hidden=512, proj_out=512, pred_hidden=128, predictor_lr_scale=30.0)),
    "barlow_twins": dict(epochs=27, optimizer="adam", lr=1e-3, weight_decay=1e-6, options=dict(_WIDE)),
    "vicreg": dict(epochs=27, optimizer="adam", lr=1e-3, weight_decay=1e-6, options=dict(_WIDE)),
    # temperature 0.1 (the paper's) collapsed to the uniform solution (loss log K, kNN flat below random init);
    # 8 epochs: temperature 0.2 probe 0.468, 0.5: 0.460 (random init 0.408 with that 30-epoch probe)
    "swav": dict(epochs=28, optimizer="adam", lr=1e-3, weight_decay=1e-6,
                 options=dict(_PROJ, num_prototypes=100, temperature=0.2, freeze_prototypes_epochs=1)),
}
_LEARN_SMOKE = dict(epochs=1, lr=1e-3, optimizer="adam", weight_decay=1e-6)
PAPER_PRESETS["learn"] = {
    "smoke": dict(view_size=None, probe_epochs=5, knn_k=20, methods={
        "supervised": dict(_LEARN_SMOKE, optimizer="sgd", lr=0.05, weight_decay=5e-4),
        "simclr": dict(_LEARN_SMOKE), "byol": dict(_LEARN_SMOKE), "simsiam": dict(_LEARN_SMOKE),
        "mocov2plus": dict(_LEARN_SMOKE, options={"queue_size": 256}), "barlow_twins": dict(_LEARN_SMOKE),
        "vicreg": dict(_LEARN_SMOKE), "swav": dict(_LEARN_SMOKE, options={"num_prototypes": 30}),
    }),
    # 24 px training views of the 32 px images (evaluation stays at 32 px): SimCLR, 8 epochs, reached the same
    # probe (0.512 vs 0.515) in 119 s instead of 171 s
    "cpu": dict(batch_size=256, view_size=24, knn_k=20, methods=LEARN_CPU_RECIPES),
}


PRESET_CHOICES = (*PRESETS, "auto")  # what a notebook's ``preset`` parameter accepts


def resolve_preset(name: str) -> str:
    """``"auto"``: ``"colab"`` in a Google Colab session with a CUDA GPU, else ``"cpu"``; any other name as is.

    Only in Colab: on a workstation or CI machine with a GPU, the book build and the notebook tests keep running
    the defaults at cpu size (minutes, not an hour per notebook); pass ``preset="colab"`` there to choose it."""
    if name != "auto":
        return name
    import torch

    return "colab" if "google.colab" in sys.modules and torch.cuda.is_available() else "cpu"


def resolve(name: str, paper: str | None = None, dataset: str | None = None, **overrides) -> Settings:
    """The typed settings of preset ``name``: :data:`PRESETS`, then ``paper``'s additions, then the preset's
    ``dataset_overrides[dataset]``, then ``overrides``, over the defaults of ``paper``'s schema (:data:`SCHEMAS`).
    ``name`` may be ``"auto"`` (:func:`resolve_preset`). An unknown preset, paper or key (also one inside any
    dataset's overrides) raises a ValueError that lists what is allowed."""
    name = resolve_preset(name)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESET_CHOICES)}")
    if paper is not None and paper not in PAPER_PRESETS:
        known = ", ".join(sorted(PAPER_PRESETS)) or "none"
        raise ValueError(f"no presets for paper {paper!r}: known papers are {known}")
    schema = SCHEMAS[paper]
    known = {f.name for f in dataclasses.fields(schema)}
    merged = copy.deepcopy(PRESETS[name])
    if paper is not None:
        merged.update(copy.deepcopy(PAPER_PRESETS[paper].get(name, {})))
    by_dataset = overrides.get("dataset_overrides", merged.get("dataset_overrides", {}))
    for where, keys in by_dataset.items():
        bad = set(keys) - (known - {"dataset_overrides"})
        if bad:
            raise ValueError(f"unknown key(s) {sorted(bad)} in dataset_overrides[{where!r}] of preset {name!r}: "
                             f"known keys are {', '.join(sorted(known - {'dataset_overrides'}))}")
    if dataset is not None:
        merged.update(copy.deepcopy(by_dataset.get(dataset, {})))
    merged.update(overrides)
    unknown = set(merged) - known
    if unknown:
        raise ValueError(f"unknown preset key(s) {sorted(unknown)}: known keys are {', '.join(sorted(known))}")
    return schema(**merged)


def preset(name: str, paper: str | None = None, dataset: str | None = None, **overrides) -> dict:
    """:func:`resolve` as a plain dict with every key of the schema: what the notebooks and studies read
    (``settings["lr"]``), copy (``dict(settings, epochs=1)``) and change. ``dataset``: the dataset the run trains
    on, whose ``dataset_overrides`` apply (None: none apply).

    ``paper="learn"`` keeps only the keys its presets set (validated all the same): ``ssltutor.learn`` stores each
    run's merged recipe with its record, so a key added here would make every recorded run look like another."""
    settings = as_dict(resolve(name, paper, dataset, **overrides))
    if paper == "learn":
        given = {*PRESETS[resolve_preset(name)], *PAPER_PRESETS["learn"].get(resolve_preset(name), {}), *overrides}
        settings = {k: v for k, v in settings.items() if k in given}
    return settings


def as_dict(settings: Settings) -> dict:
    """Typed settings as the plain dict :func:`preset` returns (every key, shallow)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
