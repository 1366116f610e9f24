"""The evaluation networks (ResNet, DenseNet, VGG, AlexNet, LeNet, MLP): shapes, gradients, sizes, structure."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamdd.errors import DreamddError
from dreamdd.models import create_model, list_models, matching_parameters
from dreamdd.seeding import generator, global_seed

ZOO = [name for name in list_models() if not name.startswith("convnet")]   # every registered non-ConvNet
SHAPES = [(1, (8, 8)), (1, (28, 28)), (3, (32, 32))]
# narrow versions keep the gradient test fast; the structure (depth, pooling, norms) is the same
NARROW = {"resnet10_bn": 8, "resnet10_ap": 8, "resnet18_bn": 8, "densenet121": 4, "vgg11": 8, "vgg11_bn": 8,
          "alexnet": 8, "lenet": 6, "mlp": 16}


def _batch(n, channels, size, seed=0):
    return torch.randn(n, channels, *size, generator=generator(seed, "x"))


def _has_batch_norm(net):
    return any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def _count(net):
    return sum(p.numel() for p in net.parameters())


def test_the_zoo_is_registered():
    assert set(NARROW) == set(ZOO)      # a newly registered model gets a narrow width here, and so its tests


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("channels,size", SHAPES)
def test_forward_batch_one_full_width(name, channels, size):
    """The published widths: batch 1 (eval mode for batch norm), logits and embedding have the right shapes."""
    with global_seed(0, name):
        net = create_model(name, num_classes=7, channels=channels, image_size=size)
    net.train(not _has_batch_norm(net))
    x = _batch(1, channels, size)
    with torch.no_grad():
        out, feat = net(x), net.embed(x)
    assert out.shape == (1, 7) and torch.isfinite(out).all()
    assert feat.shape == (1, net.feature_dim) and torch.isfinite(feat).all()
    assert net.classifier.in_features == net.feature_dim
    assert torch.allclose(net.classifier(feat), out, atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("channels,size", SHAPES)
def test_every_parameter_gets_a_gradient(name, channels, size):
    with global_seed(1, name):
        net = create_model(name, 5, channels, size, width=NARROW[name]).train()
    x = _batch(2, channels, size, seed=1)
    loss = F.cross_entropy(net(x), torch.tensor([0, 3]))
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    assert matching_parameters(net) and matching_parameters(net)[0].grad.abs().sum() > 0
    assert net.embed(x).shape == (2, net.feature_dim)


@pytest.mark.parametrize("name", ["vgg11", "resnet10_ap"])
def test_instance_norm_nets_on_8x8_keep_the_signal(name):
    """Downsampling that would leave a normalised 1x1 map is skipped, so different inputs give different outputs."""
    net = create_model(name, 3, 1, (8, 8), width=8)
    out = net(_batch(4, 1, (8, 8), seed=2))
    assert (out - out[0]).abs().max() > 1e-4


@pytest.mark.parametrize("name,expected", [("resnet18_bn", 11.2e6), ("densenet121", 7.0e6), ("vgg11_bn", 9.2e6)])
def test_parameter_counts_cifar(name, expected):
    assert abs(_count(create_model(name, 10, 3, (32, 32))) - expected) <= 0.15 * expected


def test_exact_parameter_counts_cifar():
    counts = {name: _count(create_model(name, 10, 3, 32)) for name in ("resnet18_bn", "resnet10_bn", "lenet", "mlp")}
    assert counts == {"resnet18_bn": 11_173_962, "resnet10_bn": 4_903_242, "lenet": 62_006,
                      "mlp": 32 * 32 * 3 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10}
    assert _count(create_model("vgg11", 10, 3, 32)) == _count(create_model("vgg11_bn", 10, 3, 32))


def test_norms_and_downsampling():
    def norms(net):
        return {type(m) for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}

    vgg = create_model("vgg11", 10, 3, 32, width=8)
    assert norms(vgg) == {nn.GroupNorm}
    assert all(m.num_groups == m.num_channels for m in vgg.modules() if isinstance(m, nn.GroupNorm))
    assert norms(create_model("vgg11_bn", 10, 3, 32, width=8)) == {nn.BatchNorm2d}
    assert norms(create_model("resnet18_bn", 10, 3, 32, width=8)) == {nn.BatchNorm2d}
    assert norms(create_model("densenet121", 10, 3, 32, width=4)) == {nn.BatchNorm2d}
    assert not norms(create_model("alexnet", 10, 3, 32, width=8))
    ap = create_model("resnet10_ap", 10, 3, 32, width=8)
    assert norms(ap) == {nn.GroupNorm}
    assert all(m.num_groups == m.num_channels and m.affine for m in ap.modules() if isinstance(m, nn.GroupNorm))
    assert all(m.stride == (1, 1) for m in ap.modules() if isinstance(m, nn.Conv2d))    # pooling downsamples
    assert sum(isinstance(m, nn.AvgPool2d) for m in ap.modules()) == 3                    # in the 3 shortcuts
    bn = create_model("resnet10_bn", 10, 3, 32, width=8)
    assert sum(m.stride == (2, 2) for m in bn.modules() if isinstance(m, nn.Conv2d)) == 6  # 3 blocks x (conv + sc)
    # CIFAR stem: a 3x3 stride-1 conv, no max-pool
    for net in (ap, bn, create_model("densenet121", 10, 3, 32, width=4)):
        assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
        assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())


def test_depths():
    def convs(name):
        return sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
                   for m in create_model(name, 10, 3, 32, width=4).modules())
    assert convs("resnet18_bn") == 1 + 16 and convs("resnet10_bn") == 1 + 8 and convs("resnet10_ap") == 1 + 8
    assert convs("vgg11") == 8
    assert convs("densenet121") == 1 + 6 + 12 + 24 + 16
    dense = create_model("densenet121", 10, 3, 32)
    assert dense.feature_dim == 1024 and dense.conv1.out_channels == 64


@pytest.mark.parametrize("name,size,final", [
    ("resnet18_bn", 32, (4, 4)), ("resnet18_bn", 28, (4, 4)), ("resnet18_bn", 8, (2, 2)),
    ("resnet10_ap", 32, (4, 4)), ("resnet10_ap", 28, (3, 3)), ("resnet10_ap", 8, (2, 2)),
    ("densenet121", 32, (4, 4)), ("densenet121", 28, (3, 3)), ("densenet121", 8, (2, 2))])
def test_final_map_sizes(name, size, final):
    assert create_model(name, 10, 1, size, width=4).final_map == final


@pytest.mark.parametrize("size", [8, 28, 32])
def test_classic_feature_sizes(size):
    assert create_model("vgg11", 10, 1, size).feature_dim == 512          # 1x1 final map, as in DC
    assert create_model("lenet", 10, 1, size).feature_dim == 84
    alex = create_model("alexnet", 10, 1, size)
    lenet = create_model("lenet", 10, 1, size)
    if size in (28, 32):
        assert alex.feature_dim == 192 * 4 * 4                              # DC's fc input
        assert lenet.feature_shape == (16, 5, 5)
    else:
        assert alex.feature_shape == (192, 1, 1) and lenet.feature_shape == (16, 2, 2)


def test_28x28_first_conv_padding_as_in_dc():
    x = torch.zeros(1, 1, 28, 28)
    assert create_model("alexnet", 10, 1, 28, width=4).features[0](x).shape[-2:] == (32, 32)
    assert create_model("vgg11", 10, 1, 28, width=4).features[0](x).shape[-2:] == (32, 32)


def test_mlp_is_a_linear_map_on_the_flattened_input():
    net = create_model("mlp", 10, 3, 32, width=16)
    x = _batch(3, 3, (32, 32))
    w = net.fc_1.weight.reshape(16, -1)
    hidden = torch.relu(F.linear(x.flatten(1), w, net.fc_1.bias))
    assert torch.allclose(net.embed(x), torch.relu(net.fc_2(hidden)), atol=1e-5)


def test_width_option_and_errors():
    assert create_model("resnet18_bn", 10, 3, 32, width=16).feature_dim == 128
    assert create_model("mlp", 10, 3, 32, width=None).feature_dim == 128     # None keeps the default
    for name in ZOO:
        with pytest.raises(DreamddError, match="width"):
            create_model(name, 10, 3, 32, colour="red")
        with pytest.raises(DreamddError, match="width"):
            create_model(name, 10, 3, 32, width=0)


def test_same_seed_same_weights():
    def weights(seed):
        with global_seed(seed, "net"):
            return create_model("resnet10_ap", 10, 3, 32, width=8).state_dict()

    a, b, c = weights(1), weights(1), weights(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
