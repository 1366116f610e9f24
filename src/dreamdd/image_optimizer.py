"""The synthetic images' optimizer: SGD with momentum on the stored pixels that takes exactly the step the method's
paper takes in its own image space.

DC, DSA and DM learn normalized images y = (x - mean) / std; MTT learns them in that space or, with ZCA, in the
whitened space z = (y - mu) W. For any such space y = A x + b, SGD with momentum on y (learning rate lr) equals
SGD on the pixels x whose gradient is first mapped by P = A^-1 A^-T: the momentum buffer is linear in the
gradients, so preconditioning each gradient preconditions the buffer. Per channel, P = std_c^2; with ZCA,
P g = std * ((std * g) W^-2) on the flattened images. The step is exact up to float rounding, and the paper's
image learning rate applies unchanged.
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
    """SGD with momentum whose every gradient first goes through `precondition` (None: plain SGD on pixels).
    Its state_dict is SGD's, so checkpoints stay what they were."""

    def __init__(self, images: torch.Tensor, lr: float, momentum: float,
                 precondition: Preconditioner | None = None):
        super().__init__([images], lr=lr, momentum=momentum)
        self.precondition = precondition

    @torch.no_grad()
    def step(self, closure=None):
        if self.precondition is not None:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.copy_(self.precondition(p.grad))
        return super().step(closure)
