import pytest
import torch

from ssltutor.models import BACKBONES, HEADS, create_backbone, head, mlp


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("size", [32, 64])
def test_backbone_shapes_and_stages(name, size):
    net = create_backbone(name, width=8)
    x = torch.randn(2, 3, size, size)
    out = net(x)
    assert out.shape == (2, net.feature_dim)
    fmap = net.stem(x)
    for i, stage in enumerate(net.stages):
        fmap = stage(fmap)
        assert fmap.shape[1] == net.stage_channels[i]
    assert torch.allclose(net.pool(fmap), out, atol=1e-5)
    mid = net.forward_stages(net.stem(x), 0, 2)
    assert torch.allclose(net.pool(net.forward_stages(mid, 2)), out, atol=1e-5)


def test_cifar_stem_keeps_resolution():
    net = create_backbone("resnet18", cifar_stem=True)
    assert net.stem(torch.randn(1, 3, 32, 32)).shape[-1] == 32
    net = create_backbone("resnet18", cifar_stem=False)
    assert net.stem(torch.randn(1, 3, 32, 32)).shape[-1] == 8
    assert create_backbone("resnet50").feature_dim == 2048


def test_backbone_bad_arguments():
    with pytest.raises(ValueError, match="choose one of"):
        create_backbone("vgg")
    with pytest.raises(ValueError, match="width"):
        create_backbone("small_convnet", width=0)
    with pytest.raises(ValueError, match="pretrained"):
        create_backbone("small_convnet", pretrained=True)


def test_mlp_layout():
    net = mlp([16, 32, 8])
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert net[0].bias is None and net[-1].bias is not None
    net = mlp([16, 32, 32, 8], batch_norm=False, last_batch_norm=True)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "BatchNorm1d"]
    assert net(torch.randn(4, 16)).shape == (4, 8)
    with pytest.raises(ValueError):
        mlp([16])
    with pytest.raises(ValueError, match="activation"):
        mlp([4, 4], activation="swish")


@pytest.mark.parametrize("kind", HEADS)
def test_named_heads(kind):
    h = head(kind, 64, scale=1 / 16)
    out = h(torch.randn(4, 64))
    assert out.ndim == 2
    if kind == "rotation_head":
        assert out.shape[1] == 4
    if kind == "cassle_predictor":
        assert out.shape[1] == 64
    with pytest.raises(ValueError):
        head("nope", 8)
