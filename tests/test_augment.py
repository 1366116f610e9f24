"""DSA and CutMix: siamese sharing, per-sample variety, differentiability, determinism, soft targets."""
import pytest
import torch

from dreamdd.augment import SiameseAugment, OPS, cutmix, soft_cross_entropy
from dreamdd.errors import DreamddError
from dreamdd.seeding import generator

ALL = "_".join(OPS)


def _images(n=6, c=3, h=16, w=16, seed=0):
    return torch.rand(n, c, h, w, generator=generator(seed, "images"))


@pytest.mark.parametrize("strategy", list(OPS) + ["color_crop_cutout", ALL])
def test_shared_applies_one_transform_to_both_halves(strategy):
    x = _images()
    out = SiameseAugment(strategy)(torch.cat([x, x]), generator(1, strategy), shared=True)
    assert out.shape == (12, 3, 16, 16)
    torch.testing.assert_close(out[:6], out[6:])


@pytest.mark.parametrize("strategy", list(OPS) + [ALL])
def test_independent_params_differ_across_samples(strategy):
    x = _images(n=1).expand(16, -1, -1, -1)
    out = SiameseAugment(strategy)(x, generator(2, strategy), shared=False)
    assert out.shape == x.shape
    assert any(not torch.allclose(out[0], o) for o in out[1:])


@pytest.mark.parametrize("strategy", list(OPS))
@pytest.mark.parametrize("shared", [False, True])
def test_gradients_flow_to_the_input(strategy, shared):
    x = _images(n=4, c=1, h=9, w=7).requires_grad_(True)
    out = SiameseAugment(strategy)(x, generator(3, strategy), shared=shared)
    out.mul(torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_seed_same_output_and_shapes_preserved():
    x = _images(n=3, c=2, h=12, w=20)
    dsa = SiameseAugment(ALL)
    a = dsa(x, generator(4, "aug"))
    b = dsa(x, generator(4, "aug"))
    c = dsa(x, generator(5, "aug"))
    assert a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_params_then_apply_equals_call():
    x = _images()
    dsa = SiameseAugment("color_crop_cutout")
    params = dsa.sample_params(6, generator(6, "p"), x.device)
    assert all(v.shape[0] == 6 for v in params.values())
    assert torch.equal(dsa.apply(x, params), dsa(x, generator(6, "p")))


def test_ops_follow_dsa_definitions():
    x = _images(n=4)
    g = generator(7, "check")
    p = SiameseAugment("color").sample_params(4, g, x.device)
    manual = x + (p["brightness"].view(-1, 1, 1, 1) - 0.5)
    mean = manual.mean(1, keepdim=True)
    manual = (manual - mean) * (p["saturation"].view(-1, 1, 1, 1) * 2) + mean
    mean = manual.mean((1, 2, 3), keepdim=True)
    manual = (manual - mean) * (p["contrast"].view(-1, 1, 1, 1) + 0.5) + mean
    torch.testing.assert_close(SiameseAugment("color").apply(x, p), manual)
    # crop: an integer shift of at most 2 pixels (1/8 of 16), zero fill; cutout zeroes an 8x8 square at most
    crop = SiameseAugment("crop").apply(x, {"crop": torch.tensor([[0.0, 0.99]] * 4)})   # shift rows -2, cols +2
    torch.testing.assert_close(crop[:, :, 2:, :-2], x[:, :, :-2, 2:])
    assert (crop[:, :, :2] == 0).all() and (crop[:, :, :, -2:] == 0).all()
    cut = SiameseAugment("cutout").apply(torch.ones(4, 1, 16, 16), SiameseAugment("cutout").sample_params(4, g, x.device))
    zeros = (cut == 0).sum((1, 2, 3))
    assert (zeros > 0).all() and (zeros <= 64).all()
    flipped = SiameseAugment("flip").apply(x, {"flip": torch.tensor([0.1, 0.9, 0.1, 0.9])})
    assert torch.equal(flipped[0], x[0].flip(2)) and torch.equal(flipped[1], x[1])
    identity = {"scale": torch.full((4, 2), (1 - 1 / 1.2) / (1.2 - 1 / 1.2))}   # maps to scale factor 1
    torch.testing.assert_close(SiameseAugment("scale").apply(x, identity), x)
    torch.testing.assert_close(SiameseAugment("rotate").apply(x, {"rotate": torch.full((4,), 0.5)}), x)


def test_empty_strategy_is_identity_and_unknown_op_raises():
    x = _images()
    assert SiameseAugment("")(x, generator(0)) is x
    with pytest.raises(DreamddError, match="cutout"):
        SiameseAugment("color_jitter")


def test_cutmix_targets_are_distributions():
    x = _images(n=8)
    y = torch.arange(8) % 4
    g = generator(8, "cutmix")
    mixed_any = False
    for _ in range(10):
        out, t = cutmix(x, y, 4, g, beta=1.0, prob=1.0)
        assert out.shape == x.shape and t.shape == (8, 4)
        assert (t >= 0).all()
        torch.testing.assert_close(t.sum(1), torch.ones(8))
        mixed_any |= not torch.equal(out, x)
    assert mixed_any


def test_cutmix_prob_zero_unchanged_and_one_hot():
    x = _images(n=5)
    y = torch.tensor([0, 2, 1, 2, 0])
    out, t = cutmix(x, y, 3, generator(9), prob=0.0)
    assert out is x
    assert torch.equal(t, torch.nn.functional.one_hot(y, 3).float())


def test_cutmix_is_deterministic_differentiable_and_matches_area():
    x = _images(n=6).requires_grad_(True)
    y = torch.arange(6)
    a, ta = cutmix(x, y, 6, generator(10, "c"), beta=0.7, prob=1.0)   # beta != 1: the NumPy Beta path
    b, tb = cutmix(x, y, 6, generator(10, "c"), beta=0.7, prob=1.0)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    # each row's own-label weight is the fraction of pixels kept from the sample itself
    changed = (a != x).any(1).float().mean((1, 2))
    moved = ta.diagonal() < 1
    if moved.any():
        torch.testing.assert_close(1 - ta.diagonal()[moved], changed[moved], atol=0.1, rtol=0)
    soft_cross_entropy(torch.randn(6, 6), ta)
    a.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.sum() > 0


def test_cutmix_accepts_soft_targets_and_rejects_bad_prob():
    x = _images(n=4)
    soft = torch.full((4, 3), 1 / 3)
    _, t = cutmix(x, soft, 3, generator(11), prob=1.0)
    torch.testing.assert_close(t, soft)
    with pytest.raises(DreamddError):
        cutmix(x, torch.zeros(4, dtype=torch.long), 3, generator(11), prob=1.5)


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4, generator=generator(12))
    y = torch.tensor([0, 3, 1, 2, 3])
    torch.testing.assert_close(soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 4).float()),
                               torch.nn.functional.cross_entropy(logits, y))
