"""What a method may use of the loop that runs it: a small protocol the loop implements (engine/context.py).

A method never sees the loop itself, so it cannot reach into its internals: it gets its settings, the data, the
classes this process owns, fresh networks, real batches chosen by the selector, the image step, training on real
data, the stopwatch for the parts of an inner iteration and the random streams of an outer iteration. The time of
every part and the seed of every stream are therefore fixed by the loop, the same for every method.

Under torchrun a process owns a share of the classes (`classes`); a method draws what concerns class c from
rng(it, "class", c) and what concerns the network from rng(it, "network"), so that its result does not depend on
how many processes share the classes; the network update on real data (train_on_real) is data-parallel, and
whole_set() gathers every class's images where a method needs the whole set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ContextManager, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import Config
    from ..data import LoadedDataset
    from ..image_optimizer import ImageSGD
    from ..synthetic import ClassRows, SyntheticSet

Augment = Callable[..., torch.Tensor]


class MethodContext(Protocol):
    """The loop as a method sees it (17 members)."""

    config: "Config"
    data: "LoadedDataset"          # info (normalization, class count) and the training split
    device: torch.device
    classes: list[int]             # the classes whose synthetic images this process learns
    precision: str                 # resolved, fp32 or bf16: what the method's network forwards run in

    def network(self, *keys: object) -> nn.Module:
        """A freshly initialised distillation network whose weights depend only on (seed, keys)."""

    def rng(self, it: int, *keys: object) -> torch.Generator:
        """The random stream of outer iteration `it` and `keys` (("class", c), ("network",)): the same on resume
        and in every process."""

    def timed(self, part: str) -> ContextManager[None]:
        """Count the block's wall time under `part` ("match", "network", ...); nested parts pause outer ones."""

    def inner_step_done(self) -> bool:
        """One inner step of the outer iteration is over (timings and progress). False when the loop's wall-time
        deadline (distill.max_minutes) leaves no room for another inner step as long as this one: a method whose
        every inner step updates the images ends its outer iteration there; one whose image update comes only at
        the end of the outer iteration (MTT, DM) goes on, and the loop stops after it."""

    def real_batch(self, c: int, n: int, net: nn.Module | None,
                   g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n real images of class c chosen by the selector (embedding with `net`), normalized, and labels."""

    def paired_batches(self, c: int, net: nn.Module | None, synthetic: "SyntheticSet | ClassRows",
                       g: torch.Generator, n_real: int, augment: Augment | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class c's real batch and synthetic images (in the graph), normalized, siamese-augmented if asked."""

    def image_step(self, loss: torch.Tensor, image_optimizer: torch.optim.Optimizer,
                   extra: torch.optim.Optimizer | None = None) -> torch.Tensor:
        """Back-propagate the loss into the synthetic images (and `extra`'s parameters), step; return the loss,
        detached, as a tensor: the loop reads it and checks it is finite once per outer iteration, not once per
        step (each read is a host sync on a GPU)."""

    def class_image_step(self, c: int, synthetic: "SyntheticSet", image_optimizer: "ImageSGD",
                         loss_of: Callable[["ClassRows"], torch.Tensor]) -> torch.Tensor:
        """An image step of class c alone: loss_of(rows) computes the loss from class c's rows (sampled as the set
        samples them), and the step (the momentum of every class moving, as image_step on a loss of class c)
        costs what class c holds, not the whole set (ImageSGD.class_step); returns the loss as image_step does."""

    def skip_class_step(self, image_optimizer: "ImageSGD") -> None:
        """Another process takes an image step for a class this one does not own: take the zero-gradient step
        one process would take here, so that this process's images (their momentum) move as in one process."""

    def whole_set(self, synthetic: "SyntheticSet") -> tuple[torch.Tensor, torch.Tensor]:
        """Every class's decoded images (detached, pixels) and labels, gathered from the processes owning them."""

    def train_on_real(self, net: nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator,
                      n_images: int) -> None:
        """Train `net` on random real batches until n_images were seen (IDC's network update); data-parallel
        under torchrun, and the same network in every process."""

    def log(self, message: str) -> None:
        """A line for the run's log (and the terminal unless quiet)."""
