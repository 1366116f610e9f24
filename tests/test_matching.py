import torch

from dreamdd.methods import GradientMatching
from dreamdd.models import create_model
from dreamdd.seeding import global_seed


def _net():
    with global_seed(0, "test"):
        return create_model("convnet", num_classes=3, channels=1, image_size=(8, 8), width=8, depth=2)


def test_gradient_matching_zero_for_identical_batches_positive_otherwise():
    net = _net()
    g = torch.Generator().manual_seed(0)
    real = torch.randn(6, 1, 8, 8, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for metric in ("mse", "l1"):
        method = GradientMatching(metric)
        syn = real.clone().requires_grad_(True)
        other = torch.randn(6, 1, 8, 8, generator=g).requires_grad_(True)
        loss = method.loss(net, real, labels, other, labels)
        assert loss.item() > 1e-3
        # identical batches: zero up to float rounding (the two backward passes take different graph paths)
        assert method.loss(net, real, labels, syn, labels).item() < 1e-6 * loss.item()
        loss.backward()
        assert other.grad is not None and other.grad.abs().sum() > 0


def test_gradient_matching_step_lowers_the_loss():
    net = _net()
    g = torch.Generator().manual_seed(1)
    real = torch.randn(8, 1, 8, 8, generator=g)
    labels = torch.zeros(8, dtype=torch.long)
    syn = torch.randn(2, 1, 8, 8, generator=g).requires_grad_(True)
    method = GradientMatching("mse")
    opt = torch.optim.SGD([syn], lr=0.5)
    first = None
    for _ in range(20):
        loss = method.loss(net, real, labels, syn, labels[:2])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert method.loss(net, real, labels, syn, labels[:2]).item() < first
