"""The synthetic images' optimizer: SGD with momentum on the stored pixels that takes exactly the step the method's
paper takes in its own image space.

DC, DSA and DM learn normalized images y = (x - mean) / std; MTT learns them in that space or, with ZCA, in the
whitened space z = (y - mu) W. For any such space y = A x + b, SGD with momentum on y (learning rate lr) equals
SGD on the pixels x whose gradient is first mapped by P = A^-1 A^-T: the momentum buffer is linear in the
gradients, so preconditioning each gradient preconditions the buffer. Per channel, P = std_c^2; with ZCA,
P g = std * ((std * g) W^-2) on the flattened images. The step is exact up to float rounding, and the paper's
image learning rate applies unchanged.

IDC steps one class at a time, and its momentum moves every image at every class step. class_step() gives that
result at the cost of the stepped class alone: the other classes' zero-gradient steps are owed, and paid in
closed form when their rows are next stepped or read (flush; k owed steps move the rows by lr * buffer *
(mu + ... + mu^k) and leave the buffer times mu^k), equal to taking them one by one up to float rounding. A
step at 1,000 classes then costs what one at 10 does.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

SPACES = ("pixels", "normalized", "zca")
Preconditioner = Callable[[torch.Tensor], torch.Tensor]


def channel_preconditioner(std: Sequence[float]) -> Preconditioner:
    """The map for images learned in the normalized space: each channel's gradient times std_c^2."""
    scale = torch.tensor(std, dtype=torch.float64).pow(2).view(1, -1, 1, 1)

    def precondition(grad: torch.Tensor) -> torch.Tensor:
        return grad * scale.to(grad.device, grad.dtype)
    return precondition


def zca_preconditioner(std: Sequence[float], matrix: torch.Tensor) -> Preconditioner:
    """The map for images learned in the ZCA-whitened space z = (normalized - mean) @ matrix (matrix symmetric
    positive definite, as dreamdd.zca fits it): std * ((std * grad) @ matrix^-2)."""
    values, vectors = torch.linalg.eigh(matrix.double())
    inverse_square = ((vectors / values.pow(2)) @ vectors.T).float()
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def precondition(grad: torch.Tensor) -> torch.Tensor:
        s = scale.to(grad.device, grad.dtype)
        whitened = (grad * s).flatten(1) @ inverse_square.to(grad.device, grad.dtype)
        return whitened.view_as(grad) * s
    return precondition


class ImageSGD(torch.optim.SGD):
    """SGD with momentum whose every gradient first goes through `precondition` (None: plain SGD on pixels), over
    images grouped into `classes` equal blocks of rows (class_step). Its state_dict is SGD's, so checkpoints stay
    what they were."""

    def __init__(self, images: torch.Tensor, lr: float, momentum: float,
                 precondition: Preconditioner | None = None, classes: int = 1):
        super().__init__([images], lr=lr, momentum=momentum)
        self.precondition = precondition
        self.classes = classes
        self._clock = 0                      # steps taken
        self._paid = [0] * classes           # the step up to which each class's rows are current

    @property
    def images(self) -> torch.Tensor:
        return self.param_groups[0]["params"][0]

    def _rows(self, c: int) -> slice:
        per_class = self.images.shape[0] // self.classes
        return slice(c * per_class, (c + 1) * per_class)

    def _buffer(self) -> torch.Tensor:
        state = self.state[self.images]
        if state.get("momentum_buffer") is None:       # as SGD's first step: a zero history
            state["momentum_buffer"] = torch.zeros_like(self.images)
        return state["momentum_buffer"]

    @torch.no_grad()
    def _pay(self, c: int) -> None:
        """Class c's owed zero-gradient steps, in closed form."""
        owed = self._clock - self._paid[c]
        self._paid[c] = self._clock
        buffer = self.state[self.images].get("momentum_buffer")
        mu, lr = self.param_groups[0]["momentum"], self.param_groups[0]["lr"]
        if not owed or buffer is None or mu == 0:
            return
        moved = owed if mu == 1 else mu * (1 - mu ** owed) / (1 - mu)
        rows = self._rows(c)
        self.images[rows].add_(buffer[rows], alpha=-lr * moved)
        buffer[rows].mul_(mu ** owed)

    def flush(self) -> None:
        """Every class's rows current (before anything reads the images or the momentum)."""
        for c in range(self.classes):
            self._pay(c)

    @torch.no_grad()
    def class_step(self, c: int, grad: torch.Tensor) -> None:
        """A step whose gradient is `grad` on class c's rows and zero elsewhere, at the cost of class c's rows."""
        self._pay(c)
        rows = self._rows(c)
        if self.precondition is not None:
            grad = self.precondition(grad)
        mu, lr = self.param_groups[0]["momentum"], self.param_groups[0]["lr"]
        if mu:
            buffer = self._buffer()[rows]
            buffer.mul_(mu).add_(grad)
            grad = buffer
        self.images[rows].add_(grad, alpha=-lr)
        self._clock += 1
        self._paid[c] = self._clock

    def skip_step(self) -> None:
        """A step with a zero gradient everywhere (another process's class under torchrun)."""
        self._clock += 1

    def state_dict(self):
        self.flush()
        return super().state_dict()

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._paid = [self._clock] * self.classes       # a saved state owes nothing (state_dict flushed it)

    @torch.no_grad()
    def step(self, closure=None):
        self.flush()
        if self.precondition is not None:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.copy_(self.precondition(p.grad))
        return super().step(closure)
