"""The Method interface every distillation framework implements, and the name -> method registry.

The Distiller owns the synthetic set, its image optimizer, the outer-iteration counter, checkpoints, evaluation
and records. A Method owns what happens inside one outer iteration: which networks it builds, samples or trains,
how it gets real batches (always through the Distiller's selector, so `--selector dream` works for every method),
the loss and the image updates, plus whatever extra state it learns (e.g. MTT's learning rate).

Every random stream of outer iteration t must derive from (seed, t) via dreamdd.seeding, so that a resumed run
is bit-identical to an uninterrupted one; state that carries across iterations goes into state_dict().
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..errors import DreamddError
from ..image_optimizer import Preconditioner, channel_preconditioner

if TYPE_CHECKING:   # the Distiller imports this module, not the other way round
    from ..distiller import Distiller
    from ..synthetic import SyntheticSet


class Method:
    """One matching framework (IDC, DC, DSA, DM, MTT, DREAM+) plugged into the Distiller's loop.

    `host` is the Distiller; a method uses its config, data, device, selector, augmentations, timings and its
    helpers network(*keys) (a fresh network seeded by the keys) and real(indices) (normalized real images).
    """

    name = "base"
    uses_real_batches = True     # False: the selector only matters for the representative initialisation
    # The space the paper learns its images in (image_optimizer.SPACES): the image lr is a step there, and the
    # optimizer takes the exactly equivalent step on the stored pixels. Pixels are kept in [0, 1] only by
    # methods that clamp (IDC and DREAM+ at the start of every outer iteration; DC, DSA, DM and MTT never do).
    image_space = "pixels"
    clamps = True

    def __init__(self, host: "Distiller"):
        self.host = host
        self.config = host.config

    # ---- what the Distiller asks -------------------------------------------------------------------------
    def steps_per_iteration(self) -> int:
        """Progress-bar units (inner steps) in one outer iteration."""
        return 1

    def init_network(self) -> nn.Module:
        """The network whose features choose the representative initial images."""
        return self.host.network("init")

    def outer_iteration(self, it: int, synthetic: "SyntheticSet", image_optimizer: torch.optim.Optimizer,
                        progress: Callable[[int], Any]) -> float:
        """Run outer iteration `it` (updating synthetic.images through image_optimizer); return its mean loss."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State that carries across outer iterations (tensors and plain values only: checkpoints load with
        weights_only=True)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""

    def artifact_tensors(self) -> dict[str, torch.Tensor]:
        """Extra tensors saved beside the images in the artifact (e.g. MTT's learned learning rate 'lr')."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """Method settings and results recorded in the artifact's metadata.json under 'method_info'."""
        return {}

    def image_preconditioner(self) -> Preconditioner | None:
        """The map of pixel gradients that makes SGD on pixels step as SGD in image_space (None: pixels)."""
        if self.image_space == "pixels":
            return None
        if self.image_space == "normalized":
            return channel_preconditioner(self.host.info.std)
        raise NotImplementedError(f"{type(self).__name__} declares image space {self.image_space!r} "
                                  "but gives no preconditioner for it")

    def eval_lr(self) -> float | None:
        """A learning rate the evaluation networks must use instead of eval.lr (MTT's learned one), or None."""
        return None

    def eval_preprocess(self) -> nn.Module | None:
        """A fixed input transform applied before every evaluation network (MTT's ZCA whitening), or None."""
        return None

    # ---- helpers shared by the methods -------------------------------------------------------------------
    def real_batch(self, c: int, n: int, net: nn.Module | None, g: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """n real images of class c chosen by the selector (embedding with `net`), normalized, and labels."""
        host = self.host
        bank = host.data.train
        with host.timings.part("select"):
            idx = host.selector.select(c, bank.class_indices(c), n, net=net, images_fn=host.real, generator=g)
        real = host.real(idx)
        return real, torch.full((real.shape[0],), c, dtype=torch.long, device=real.device)

    def paired_batches(self, c: int, net: nn.Module | None, synthetic: "SyntheticSet", g: torch.Generator,
                       n_real: int, augment=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class c's real batch (selector) and synthetic images (in the graph), both normalized and, when
        `augment` is given, augmented with one shared set of parameters (siamese augmentation)."""
        cfg = self.config
        real, real_labels = self.real_batch(c, n_real, net, g)
        syn, syn_labels = synthetic.sample(c, cfg.synth.max_per_class, g)
        syn = self.host.info.normalize(syn)
        if augment is not None:
            both = augment(torch.cat([real, syn]), g, shared=True)
            real, syn = both[: real.shape[0]], both[real.shape[0]:]
        return real, real_labels, syn, syn_labels

    def check_finite(self, loss: torch.Tensor, it: int, where: str = "") -> None:
        if not torch.isfinite(loss):
            raise DreamddError(f"the matching loss became {float(loss.detach())} at outer iteration {it}{where}; "
                               "lower the image learning rate (--set synth.lr=...) or check the data")

    def image_step(self, loss: torch.Tensor, image_optimizer: torch.optim.Optimizer, it: int, where: str = "",
                   extra: torch.optim.Optimizer | None = None) -> float:
        """Check the loss, back-propagate it into the synthetic images and take one optimizer step."""
        self.check_finite(loss, it, where)
        with self.host.timings.part("match"):
            image_optimizer.zero_grad(set_to_none=True)
            if extra is not None:
                extra.zero_grad(set_to_none=True)
            loss.backward()
            image_optimizer.step()
            if extra is not None:
                extra.step()
        return float(loss.detach())

    def train_on_real(self, net: nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator,
                      n_images: int) -> None:
        """Train `net` on random real batches until n_images were seen (IDC's network update)."""
        from ..training import train_step
        host = self.host
        cfg = self.config.distill
        bank = host.data.train
        seen = 0
        with host.timings.part("network"):
            while seen < n_images:
                idx = bank.sample(min(cfg.net_batch, n_images - seen), g)
                train_step(net, optimizer, host.real(idx), bank.labels[idx].to(host.device),
                           host.info.num_classes, g, host.net_augment, cfg.cutmix_prob)
                seen += len(idx)


class MatchingMethod:
    """A matching objective: loss(net, real, real_labels, syn, syn_labels), differentiable w.r.t. syn."""

    name = "base"

    def loss(self, net: nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
             syn: torch.Tensor, syn_labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


_METHODS: dict[str, Callable[..., Method]] = {}


def register_method(name: str):
    def wrap(factory):
        _METHODS[name] = factory
        return factory
    return wrap


def create_method(name: str, host: "Distiller") -> Method:
    """The Method called `name` (see list_methods()), bound to its Distiller."""
    if name not in _METHODS:
        raise DreamddError(f"unknown method '{name}'; known: {', '.join(list_methods())}")
    return _METHODS[name](host)


def list_methods() -> list[str]:
    return sorted(_METHODS)
