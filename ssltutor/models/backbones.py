"""Backbones: torchvision ResNets (random init, optional CIFAR stem) and a small CPU convnet.

Every backbone shares one surface so that methods and the internal-pretext wrapper can reach inside:

* ``stem``: the first block (conv, norm, activation, optional max-pool);
* ``stages``: an ``nn.ModuleList`` of the residual (or conv) stages, ``stage_channels[i]`` channels out;
* ``forward_stages(x, start, stop)``: run ``stages[start:stop]`` on a feature map;
* ``pool(feature_map)``: global average pooling to ``(B, feature_dim)``;
* ``forward(x)``: ``(B, 3, H, W)`` images to ``(B, feature_dim)`` pooled features.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet

CONVNETS = ("small_convnet", "fast_convnet", "res_convnet")  # the CPU nets: ``width`` applies
BACKBONES = ("small_convnet", "fast_convnet", "res_convnet", "resnet18", "resnet34", "resnet50")


class Backbone(nn.Module):
    """A stem, a list of stages and global average pooling."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module], stage_channels: list[int], name: str):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.stage_channels = list(stage_channels)
        self.feature_dim = self.stage_channels[-1]
        self.name = name

    def forward_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run ``stages[start:stop]`` on a feature map ``x`` (the output of the stem or of stage ``start - 1``)."""
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x

    @staticmethod
    def pool(feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C) global average pooling."""
        return feature_map.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) normalized images -> (B, feature_dim) pooled features."""
        return self.pool(self.forward_stages(self.stem(x)))


def _conv_block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _plain_convnet(width: int, pools: tuple[bool, ...], name: str) -> Backbone:
    """Stem + 4 conv-BN-ReLU stages with channels width, 2w, 4w, 8w, 8w; ``pools[i]``: 2x2 max-pool after conv i."""
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    chans = [width, 2 * width, 4 * width, 8 * width, 8 * width]
    stem = _conv_block(3, chans[0], pool=pools[0])
    stages = [_conv_block(chans[i], chans[i + 1], pool=pools[i + 1]) for i in range(4)]
    return Backbone(stem, stages, chans[1:], name=f"{name}{width}")


def small_convnet(width: int = 32) -> Backbone:
    """A 4-stage convnet for CPU runs: channels width, 2w, 4w, 8w, each stage conv-BN-ReLU then 2x2 max-pool
    (the last without pooling). At 32 px the feature maps are 32, 16, 8, 4 (pooled to 8w features)."""
    return _plain_convnet(width, (False, True, True, True, False), "small_convnet")


def fast_convnet(width: int = 16) -> Backbone:
    """``small_convnet``'s widths with a 2x2 max-pool after *every* conv but the last two: the stem's map is pooled
    to 16 px before the first stage, so each conv runs at a quarter of ``small_convnet``'s positions (measured on
    2 CPU cores: ~2.2x its images/s at the same width)."""
    return _plain_convnet(width, (True, True, True, False, False), "fast_convnet")


class _ResidualStage(nn.Module):
    """airbench's block (Keller Jordan, 2024): conv -> 2x2 max-pool -> BN -> ReLU, then ``x + conv-BN-ReLU(x)``.
    Pooling right after the first conv puts the second conv at a quarter of the positions."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.residual = _conv_block(cout, cout, pool=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.residual(x)


def res_convnet(width: int = 16) -> Backbone:
    """A small residual net that downsamples early (airbench's layout): a 3x3 stem at full resolution, then three
    stages of :class:`_ResidualStage` with ``2w, 4w, 8w`` channels at 16, 8 and 4 px (32 px input), pooled to
    ``8w`` features. Seven convs, about 1.3x ``small_convnet``'s multiply-adds at the same width."""
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    chans = [2 * width, 4 * width, 8 * width]
    stem = _conv_block(3, width, pool=False)
    stages = [_ResidualStage(width, chans[0]), _ResidualStage(chans[0], chans[1]), _ResidualStage(chans[1], chans[2])]
    return Backbone(stem, stages, chans, name=f"res_convnet{width}")


def _resnet(name: str, cifar_stem: bool, stem_padding: int) -> Backbone:
    net = getattr(resnet, name)(weights=None)
    if cifar_stem:
        # 3x3 stride-1 conv and no max-pool keep 32 px inputs at 32x32 into layer1 (solo-learn, SimCLR's CIFAR setup).
        conv = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=stem_padding, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        stem = nn.Sequential(conv, net.bn1, net.relu)
    else:
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    chans = [stage[-1].conv3.out_channels if hasattr(stage[-1], "conv3") else stage[-1].conv2.out_channels for stage in stages]
    return Backbone(stem, stages, chans, name=name + ("_cifar" if cifar_stem else ""))


def create_backbone(name: str = "small_convnet", *, cifar_stem: bool = True, width: int = 32, stem_padding: int = 1,
                    pretrained: bool = False) -> Backbone:
    """Build a backbone by name: ``small_convnet`` (``width``), ``resnet18``, ``resnet34``, ``resnet50``.

    ``cifar_stem`` (ResNets): 3x3 stride-1 first conv and no max-pool, for 32-64 px inputs. ``stem_padding`` is 1
    (DoGo, solo-learn) or 2 (CaSSLe's code). ``pretrained=True`` loads torchvision's ImageNet weights (a download,
    as the FKT code does; the standard stem is kept so the weights fit).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    if name in CONVNETS:
        if pretrained:
            raise ValueError("pretrained weights exist only for the ResNets; use a resnet backbone or pretrained=False")
        return {"small_convnet": small_convnet, "fast_convnet": fast_convnet, "res_convnet": res_convnet}[name](width)
    if pretrained:
        weights = {"resnet18": resnet.ResNet18_Weights, "resnet34": resnet.ResNet34_Weights,
                   "resnet50": resnet.ResNet50_Weights}[name].DEFAULT
        net = getattr(resnet, name)(weights=weights)
        stages = [net.layer1, net.layer2, net.layer3, net.layer4]
        chans = [s[-1].conv3.out_channels if hasattr(s[-1], "conv3") else s[-1].conv2.out_channels for s in stages]
        return Backbone(nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), stages, chans, name=name + "_imagenet")
    return _resnet(name, cifar_stem, stem_padding)
