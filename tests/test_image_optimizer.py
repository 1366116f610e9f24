"""ImageSGD.class_step: one class's image step at the cost of that class, equal (to float rounding) to the
whole-set step IDC's code takes, in which every class's momentum moves at every class step."""
import pytest
import torch

from dreamdd.image_optimizer import ImageSGD, channel_preconditioner
from dreamdd.synthetic import SyntheticSet

CLASSES, IPC = 4, 2


def _grads(rounds: int) -> list[tuple[int, torch.Tensor]]:
    """(class, gradient of its rows) for `rounds` rounds over the classes in order, class 2 skipped (another
    process's class) in round 1."""
    g = torch.Generator().manual_seed(0)
    return [(c, None if (r == 1 and c == 2) else torch.randn(IPC, 3, 4, 4, generator=g, dtype=torch.float64))
            for r in range(rounds) for c in range(CLASSES)]


@pytest.mark.parametrize("momentum, precondition", [(0.5, None), (0.9, channel_preconditioner([0.2, 0.3, 0.4])),
                                                    (0.0, None)])
def test_class_steps_equal_whole_set_steps_with_zero_gradients_elsewhere(momentum, precondition):
    start = torch.rand(CLASSES * IPC, 3, 4, 4, dtype=torch.float64)
    whole, lazy = start.clone(), start.clone()
    reference = ImageSGD(whole, 0.1, momentum, precondition)
    ours = ImageSGD(lazy, 0.1, momentum, precondition, classes=CLASSES)
    for c, grad in _grads(3):
        full = torch.zeros_like(whole)
        if grad is not None:
            full[c * IPC:(c + 1) * IPC] = grad
        whole.grad = full
        reference.step()
        if grad is None:
            ours.skip_step()
        else:
            ours.class_step(c, grad.clone())
    ours.flush()
    torch.testing.assert_close(lazy, whole, rtol=1e-12, atol=1e-12)
    if momentum:
        torch.testing.assert_close(ours.state_dict()["state"][0]["momentum_buffer"],
                                   reference.state_dict()["state"][0]["momentum_buffer"], rtol=1e-12, atol=1e-12)


def test_a_class_step_leaves_the_other_classes_rows_until_they_are_read():
    images = torch.rand(CLASSES * IPC, 3, 4, 4)
    optimizer = ImageSGD(images, 0.1, 0.5, classes=CLASSES)
    optimizer.class_step(0, torch.ones(IPC, 3, 4, 4))
    before = images.clone()
    optimizer.class_step(1, torch.ones(IPC, 3, 4, 4))       # class 0's momentum is owed one step
    assert torch.equal(images[:IPC], before[:IPC]) and not torch.equal(images[IPC:2 * IPC], before[IPC:2 * IPC])
    state = optimizer.state_dict()                            # reading the state pays what is owed
    assert not torch.equal(images[:IPC], before[:IPC])
    torch.testing.assert_close(images[:IPC], before[:IPC] - 0.1 * 0.5 * torch.ones(IPC, 3, 4, 4))
    assert state["state"][0]["momentum_buffer"][:IPC].eq(0.5).all()


def test_a_whole_set_step_pays_what_class_steps_owe_first():
    images = torch.zeros(CLASSES * IPC, 1, 2, 2)
    optimizer = ImageSGD(images, 1.0, 0.5, classes=CLASSES)
    optimizer.class_step(3, torch.ones(IPC, 1, 2, 2))          # buffer of class 3: 1, pixels -1
    optimizer.skip_step()                                     # owed: class 3 moves by 0.5 more
    images.grad = torch.zeros_like(images)
    optimizer.step()                                          # and by 0.25 in this step
    assert images[3 * IPC:].eq(-1.75).all() and images[:3 * IPC].eq(0).all()


def test_class_rows_sample_as_the_set_does_and_carry_their_own_gradient():
    images = torch.rand(CLASSES * IPC, 1, 4, 4)
    synthetic = SyntheticSet(images, CLASSES, factor=2)
    rows = synthetic.class_rows(1)
    ours, labels = rows.sample(1, 3, torch.Generator().manual_seed(5))
    theirs, _ = synthetic.sample(1, 3, torch.Generator().manual_seed(5))
    assert torch.equal(ours, theirs) and labels.tolist() == [1, 1, 1]
    ours.sum().backward()
    assert rows.images.grad.shape == (IPC, 1, 4, 4) and synthetic.images.grad is None
    with pytest.raises(ValueError):
        rows.sample(0, 3, torch.Generator())
