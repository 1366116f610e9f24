"""--deterministic: torch's deterministic algorithms for the run, restored after it; exact replacements for the
kernels CUDA has no deterministic version of (checked here against the kernels they replace); and no such kernel
reached in a run under the mode (the CPU stand-in for the RuntimeError CUDA would raise)."""
import json

import pytest
import torch
import torch.nn.functional as F
import yaml

import dreamdd
from conftest import tiny_settings
from dreamdd import determinism
from dreamdd.artifact import load_distilled
from dreamdd.cli import main
from dreamdd.models import create_model
from dreamdd.selection.kmeans import kmeans


def test_resize_bilinear_equals_interpolate_in_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    for shape, size in (((3, 2, 4, 4), (8, 8)), ((2, 3, 5, 7), (16, 14)), ((1, 1, 16, 16), (32, 32)),
                        ((2, 1, 6, 6), (4, 9))):
        x = torch.rand(shape, generator=g, requires_grad=True)
        weights = torch.rand((shape[0], shape[1], *size), generator=g)
        ours = determinism.resize_bilinear(x, size)
        (ours * weights).sum().backward()
        ours_grad = x.grad.clone()
        x.grad = None
        theirs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        (theirs * weights).sum().backward()
        assert torch.allclose(ours, theirs, atol=1e-6) and torch.allclose(ours_grad, x.grad, atol=1e-5)


def test_sample_bilinear_equals_grid_sample_in_values_and_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.rand((4, 3, 12, 10), generator=g, requires_grad=True)
    angle = torch.rand(4, generator=g) * 0.6 - 0.3
    scale = 0.8 + 0.4 * torch.rand((4, 2), generator=g)
    theta = torch.zeros(4, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale[:, 0] * angle.cos(), -angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), scale[:, 1] * angle.cos()
    theta[:, :, 2] = torch.rand((4, 2), generator=g) * 0.2 - 0.1
    grid = F.affine_grid(theta, [4, 3, 12, 10], align_corners=True)    # reaches outside: zero padding counts
    weights = torch.rand((4, 3, 12, 10), generator=g)
    ours = determinism.sample_bilinear(x, grid)
    (ours * weights).sum().backward()
    ours_grad = x.grad.clone()
    x.grad = None
    theirs = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    (theirs * weights).sum().backward()
    assert torch.allclose(ours, theirs, atol=1e-5) and torch.allclose(ours_grad, x.grad, atol=1e-5)


def test_cumulative_is_the_float_cdf_in_fixed_point():
    weights = torch.tensor([0.0, 3.0, 1.0, 0.0, 4.0])
    steps, total = determinism.cumulative(weights)
    assert steps.dtype == torch.int64 and int(total) == int(steps[-1])
    assert torch.allclose(steps.double() / total.double(), torch.cumsum(weights.double(), 0) / 8, atol=1e-12)
    draws = (torch.tensor([0.0, 0.374, 0.376, 0.5, 0.999]).double() * total).long()
    assert torch.searchsorted(steps, draws, right=True).tolist() == [1, 1, 2, 4, 4]   # never a zero weight
    equal, _ = determinism.cumulative(torch.zeros(4))
    assert equal.tolist() == [2 ** 50 * k for k in (1, 2, 3, 4)]


def test_mode_turns_deterministic_algorithms_on_for_the_block_and_restores_them():
    assert not determinism.enabled()
    with determinism.mode(True):
        assert determinism.enabled() and torch.backends.cudnn.deterministic
    assert not determinism.enabled()
    with determinism.mode(False):
        assert not determinism.enabled()
    with pytest.raises(ValueError), determinism.mode(True):
        raise ValueError("an error inside the block")
    assert not determinism.enabled()


def test_kmeans_under_the_mode_is_reproducible_and_sound():
    x = torch.cat([torch.randn(40, 5, generator=torch.Generator().manual_seed(s)) + 6 * s for s in range(3)])
    with determinism.mode(True):
        first = kmeans(x, 3, generator=torch.Generator().manual_seed(0))
        second = kmeans(x, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.centroids, second.centroids)
    assert sorted(torch.bincount(first.assignments, minlength=3).tolist()) == [40, 40, 40]


# the kernels PyTorch raises on under deterministic algorithms on CUDA (its use_deterministic_algorithms list)
# that dreamdd's code would otherwise reach in distillation and evaluation
RAISING = {"interpolate": (F, "interpolate", lambda *a, **k: k.get("mode") in ("bilinear", "bicubic", "linear")),
           "grid_sample": (F, "grid_sample", lambda *a, **k: True),
           "adaptive_avg_pool2d": (F, "adaptive_avg_pool2d", lambda *a, **k: True),
           "cumsum": (torch, "cumsum", lambda x, *a, **k: x.is_floating_point())}


@pytest.fixture
def forbidden(monkeypatch):
    """Each kernel of RAISING raises when reached under deterministic algorithms, as CUDA would."""
    for name, (owner, attribute, raises_for) in RAISING.items():
        real = getattr(owner, attribute)

        def guarded(*args, _real=real, _name=name, _raises=raises_for, **kwargs):
            if determinism.enabled() and _raises(*args, **kwargs):
                raise RuntimeError(f"{_name} has no deterministic CUDA kernel")
            return _real(*args, **kwargs)
        monkeypatch.setattr(owner, attribute, guarded)


TINY = tiny_settings(distill={"iterations": 2, "inner_loop": 2, "n_data": 32, "eval_every": 0},
                     eval={"epochs": 2, "repeats": 1, "val_every": 1}, synth={"factor": 2})


@pytest.mark.parametrize("method", ["idc", "dsa"])
def test_a_deterministic_run_reaches_no_raising_kernel_and_repeats_its_bytes(tmp_path, forbidden, method):
    settings = {**TINY, "match": {**TINY.get("match", {}), "method": method},
                "dc": {"outer_loop": 2, "inner_loop": 1}}
    runs = [dreamdd.distill("digits", 2, out=tmp_path / f"{method}-{i}", quiet=True, deterministic=True,
                            overrides=settings, evaluate=False) for i in range(2)]
    assert not determinism.enabled()                                    # restored after the run
    first, second = (load_distilled(r.path) for r in runs)
    assert torch.equal(first.images, second.images)
    assert first.metadata["deterministic"] is True and runs[0].summary["deterministic"] is True
    assert yaml.safe_load((runs[0].path / "config.yaml").read_text())["deterministic"] is True
    with pytest.raises(RuntimeError, match="no deterministic CUDA kernel"), determinism.mode(True):
        F.grid_sample(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2), align_corners=True)   # the guard works


def test_evaluate_deterministic_on_a_resnet_reaches_no_raising_kernel(tmp_path, forbidden, capsys):
    run = dreamdd.distill("digits", 1, out=tmp_path / "run", quiet=True, overrides=TINY, evaluate=False)
    code = main(["evaluate", str(run.path), "--model", "resnet10_bn", "--epochs", "1", "--repeats", "1",
                 "--deterministic", "--json", "--quiet"])
    assert code == 0 and json.loads(capsys.readouterr().out)["deterministic"] is True


def test_densenet_trains_under_the_mode_without_a_raising_kernel(forbidden):
    net = create_model("densenet121", num_classes=3, channels=1, image_size=(8, 8))
    with determinism.mode(True):
        F.cross_entropy(net(torch.rand(2, 1, 8, 8)), torch.tensor([0, 2])).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
