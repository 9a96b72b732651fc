import pytest
import torch

from ssltutor.models import BACKBONES, CONVNETS, HEADS, create_backbone, head, mlp


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


@pytest.mark.parametrize("name", CONVNETS)
def test_convnets_take_the_width_and_pool_globally(name):
    net = create_backbone(name, width=12)
    assert net.feature_dim == 96 and net.name == f"{name}12"
    for size in (24, 32):  # training views may be smaller than the evaluation size
        assert net(torch.randn(2, 3, size, size)).shape == (2, 96)
    with pytest.raises(ValueError, match="width"):
        create_backbone(name, width=0)


def test_fast_and_residual_convnets_work_at_lower_resolution():
    x = torch.randn(1, 3, 32, 32)
    small, fast, res = (create_backbone(n, width=8) for n in ("small_convnet", "fast_convnet", "res_convnet"))
    assert small.stages[0](small.stem(x)).shape[-1] == 16
    assert fast.stem(x).shape[-1] == 16 and fast.stages[0](fast.stem(x)).shape[-1] == 8
    first = res.stages[0]
    fmap = res.stem(x)
    assert fmap.shape[-1] == 32 and first(fmap).shape[-1] == 16
    # the residual branch: zeroing its conv leaves relu(bn(pool(conv(x)))) unchanged
    with torch.no_grad():
        first.residual[0].weight.zero_()
        res.eval()
        down = first.down(fmap)
        bias = torch.relu(first.residual[1].bias - first.residual[1].running_mean *
                          first.residual[1].weight / torch.sqrt(first.residual[1].running_var + 1e-5))
        assert torch.allclose(first(fmap), down + bias.view(1, -1, 1, 1), atol=1e-5)
