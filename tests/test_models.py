"""The model registry and the ConvNet family: shapes, gradients, options, determinism."""
import pytest
import torch
from torch import nn

from dreamdd.errors import DreamddError
from dreamdd.models import ConvNet, create_model, list_models, matching_parameters, register_model
from dreamdd.registry import MODELS
from dreamdd.seeding import generator, global_seed

SHAPES = [(1, (8, 8)), (1, (28, 28)), (3, (32, 32))]
SMALL = {"width": 8}   # narrow networks keep the test fast; structure is the same


def _batch(n, channels, size, seed=0):
    return torch.randn(n, channels, *size, generator=generator(seed, "x"))


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels,size", SHAPES)
def test_every_model_forward_backward_embed(name, channels, size):
    with global_seed(0, name):
        net = create_model(name, num_classes=5, channels=channels, image_size=size, **SMALL)
    batches = (2,) if name.endswith("_bn") else (1, 2)
    for n in batches:
        x = _batch(n, channels, size)
        net.zero_grad(set_to_none=True)
        out = net(x)
        assert out.shape == (n, 5) and torch.isfinite(out).all()
        out.square().sum().backward()
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        # the network actually uses its input: the first conv's weights get a non-zero gradient
        assert matching_parameters(net)[0].grad.abs().sum() > 0
        assert net.embed(x).shape == (n, net.feature_dim)


def test_28x28_first_conv_gives_32x32_maps():
    net = ConvNet(10, 1, (28, 28), width=4)
    assert net.features[0](torch.zeros(1, 1, 28, 28)).shape[-2:] == (32, 32)
    assert net.feature_shape == (4, 4, 4)
    assert ConvNet(10, 3, (32, 32), width=4).feature_shape == (4, 4, 4)


@pytest.mark.parametrize("size,depth", [((8, 8), 4), ((8, 8), 6), ((1, 1), 3), ((5, 3), 3), ((32, 32), 5)])
def test_any_depth_works_for_any_size(size, depth):
    net = ConvNet(3, 2, size, width=4, depth=depth)
    assert min(net.feature_shape[1:]) >= 1
    assert net(torch.randn(2, 2, *size)).shape == (2, 3)


def test_deep_net_on_small_images_is_not_constant():
    """ConvNet-4 on 8x8 keeps 2x2 maps for its last block, so instance norm does not erase the signal."""
    net = ConvNet(3, 1, (8, 8), width=4, depth=4)
    out = net(torch.randn(4, 1, 8, 8, generator=generator(1, "x")))
    assert (out - out[0]).abs().max() > 1e-4


@pytest.mark.parametrize("norm,kind", [("instance", nn.GroupNorm), ("batch", nn.BatchNorm2d),
                                       ("layer", nn.GroupNorm), ("none", None)])
@pytest.mark.parametrize("pooling", ["avg", "max", "none"])
def test_norm_and_pooling_options(norm, kind, pooling):
    net = create_model("convnet", 4, 3, (8, 8), width=6, depth=2, norm=norm, pooling=pooling)
    norms = [m for m in net.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert len(norms) == (0 if kind is None else 2) and all(type(m) is kind for m in norms)
    if norm == "instance":
        assert norms[0].num_groups == 6
    if norm == "layer":
        assert norms[0].num_groups == 1
    assert net.feature_dim == 6 * (64 if pooling == "none" else 4)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_registered_variants():
    assert {"convnet", "convnet3", "convnet4", "convnet3_bn", "convnetd2"} <= set(list_models())
    depth = lambda net: sum(isinstance(m, nn.Conv2d) for m in net.modules())  # noqa: E731
    assert depth(create_model("convnet", 10, 3, (32, 32), **SMALL)) == 3
    assert depth(create_model("convnet4", 10, 3, (32, 32), **SMALL)) == 4
    assert depth(create_model("convnetd2", 10, 3, (32, 32), **SMALL)) == 2
    bn = create_model("convnet3_bn", 10, 3, (32, 32), **SMALL)
    assert depth(bn) == 3 and any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    net = create_model("convnet", 10, 3, (32, 32))
    assert net.classifier.in_features == net.feature_dim == 128 * 4 * 4


def test_matching_parameters_are_exactly_the_conv_weights():
    net = create_model("convnet3_bn", 10, 3, (32, 32), **SMALL)
    convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    params = matching_parameters(net)
    assert len(params) == 3 and all(p is c for p, c in zip(params, convs))


def test_create_model_drops_none_kwargs():
    net = create_model("convnet", 10, 3, (32, 32), width=None, depth=None, norm=None, pooling=None)
    assert net.feature_dim == 128 * 4 * 4
    assert isinstance(net.features[1], nn.GroupNorm)
    assert create_model("convnet4", 10, 3, 32, depth=None, width=8).feature_dim == 8 * 2 * 2


def test_user_errors():
    with pytest.raises(DreamddError, match="convnet3_bn"):      # the message lists the known models
        create_model("resnet999", 10, 3, (32, 32))
    with pytest.raises(DreamddError, match="width"):
        create_model("convnet", 10, 3, (32, 32), colour="red")
    with pytest.raises(DreamddError, match="depth"):
        create_model("convnet4", 10, 3, (32, 32), depth=3)
    with pytest.raises(DreamddError, match="instance"):
        create_model("convnet", 10, 3, (32, 32), norm="group")
    with pytest.raises(DreamddError, match="avg"):
        create_model("convnet", 10, 3, (32, 32), pooling="mean")


def test_register_model_uses_function_name(monkeypatch):
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))   # the test model is forgotten after

    @register_model()
    def tiny_linear(num_classes, channels, image_size):
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size[0] * image_size[1], num_classes))

    assert "tiny_linear" in list_models()
    assert create_model("tiny_linear", 3, 1, (4, 4))(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_same_global_seed_same_weights():
    def weights(seed):
        with global_seed(seed, "net"):
            return create_model("convnet", 10, 3, (32, 32), **SMALL).state_dict()

    a, b, c = weights(1), weights(1), weights(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_channels_last_layout_is_opt_in(monkeypatch):
    from dreamdd.devices import uses_channels_last
    monkeypatch.delenv("DREAMDD_CHANNELS_LAST", raising=False)
    assert not uses_channels_last()
    monkeypatch.setenv("DREAMDD_CHANNELS_LAST", "1")
    assert uses_channels_last()
    monkeypatch.setenv("DREAMDD_CHANNELS_LAST", "yes")
    with pytest.raises(DreamddError, match="must be 0 or 1"):
        uses_channels_last()


def test_channels_last_network_computes_what_the_default_layout_does(monkeypatch):
    """Same weights, same inputs: outputs, weight gradients and the double-backward image gradient of the
    matching loss agree to float tolerance; weights and conv inputs really are channels_last."""
    from dreamdd.methods.gradient import gradient_distance
    from dreamdd.training import build_network

    def matching(layout):
        monkeypatch.setenv("DREAMDD_CHANNELS_LAST", layout)
        net = build_network("convnet", 10, 3, (32, 32), {"width": 16, "depth": 2}, 0, "layout",
                            device=torch.device("cpu"))
        x = _batch(6, 3, (32, 32)).requires_grad_(True)
        y = torch.arange(6) % 10
        params = matching_parameters(net)
        real = torch.autograd.grad(nn.functional.cross_entropy(net(_batch(6, 3, (32, 32), 1)), y), params)
        syn = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), params, create_graph=True)
        loss = gradient_distance([g.detach() for g in real], syn, "mse")
        (image_grad,) = torch.autograd.grad(loss, x)
        return net, loss.detach(), image_grad

    net_cl, loss_cl, grad_cl = matching("1")
    net_c, loss_c, grad_c = matching("0")
    conv = next(m for m in net_cl.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[1] > 1
    seen = []
    conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    net_cl(_batch(2, 3, (32, 32)))
    assert seen and seen[0]
    torch.testing.assert_close(loss_cl, loss_c, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad_cl, grad_c, rtol=1e-3, atol=1e-3 * float(grad_c.abs().max()))
