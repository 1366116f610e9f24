"""The Method interface every distillation framework implements; the methods are named in dreamdd.registry.

The loop owns the synthetic set, its image optimizer, the outer-iteration counter, checkpoints, evaluation and
records. A Method owns what happens inside one outer iteration: which networks it builds, samples or trains, the
loss and the image updates, plus whatever extra state it learns (e.g. MTT's learning rate). It sees the loop only
through a MethodContext (methods/context.py): real batches come through the loop's selector, so `--selector
dream` works for every method, and every random stream of outer iteration t is the context's rng(t), so a resumed
run is bit-identical to an uninterrupted one; state that carries across iterations goes into state_dict().
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..image_optimizer import Preconditioner, channel_preconditioner
from ..registry import METHODS
from .context import MethodContext

if TYPE_CHECKING:
    from ..synthetic import SyntheticSet


class Method:
    """One matching framework (IDC, DC, DSA, DM, MTT, DREAM+) run by the loop through a MethodContext."""

    name = "base"
    # The space the paper learns its images in (image_optimizer.SPACES): the image lr is a step there, and the
    # optimizer takes the exactly equivalent step on the stored pixels. Pixels are kept in [0, 1] only by
    # methods that clamp (IDC and DREAM+ at the start of every outer iteration; DC, DSA, DM and MTT never do).
    image_space = "pixels"
    clamps = True
    # Whether the selector forgets its cached choices at the start of every outer iteration (the matching
    # network is new then); DM keeps them for select.interval iterations, MTT never selects.
    reselects_every_iteration = True
    # Whether an outer iteration ends early at the wall-time deadline, after any inner step (each one updates the
    # images: IDC, DREAM+, DC, DSA), so the loop may start one that would not fit (MethodContext.inner_step_done).
    ends_at_deadline = False

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx
        self.config = ctx.config

    # ---- what the loop asks ------------------------------------------------------------------------------
    def steps_per_iteration(self) -> int:
        """Progress-bar units (inner steps) in one outer iteration."""
        return 1

    def init_network(self) -> nn.Module:
        """The network whose features choose the representative initial images."""
        return self.ctx.network("init")

    def outer_iteration(self, it: int, synthetic: "SyntheticSet",
                        image_optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Run outer iteration `it` (updating synthetic.images through image_optimizer); return its mean loss as a
        0-dim tensor (the loop reads it once)."""
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
            return channel_preconditioner(self.ctx.data.info.std)
        raise NotImplementedError(f"{type(self).__name__} declares image space {self.image_space!r} "
                                  "but gives no preconditioner for it")

    def eval_lr(self) -> float | None:
        """A learning rate the evaluation networks must use instead of eval.lr (MTT's learned one), or None."""
        return None

    @classmethod
    def eval_settings_from(cls, extra: dict[str, torch.Tensor]) -> tuple[float | None, nn.Module | None]:
        """eval_lr() and eval_preprocess() of a set this method distilled, from its artifact's extra tensors
        (artifact_tensors()): what the method learned or fixed that evaluation must use; none by default."""
        return None, None

    def eval_preprocess(self) -> nn.Module | None:
        """A fixed input transform applied before every evaluation network (MTT's ZCA whitening), or None."""
        return None


def create_method(name: str, ctx: MethodContext) -> Method:
    """The Method called `name` (see list_methods()), bound to the loop's context."""
    return METHODS.create(name, ctx)


def list_methods() -> list[str]:
    return METHODS.names()


def learned_eval_settings(method: str | None, extra: dict[str, torch.Tensor]
                          ) -> tuple[float | None, nn.Module | None]:
    """The learning rate and input transform that evaluating a set distilled by `method` must use (the method
    owns them: MTT's learned rate and ZCA whitening); (None, None) for other methods and other sources."""
    owner = METHODS[method] if method in METHODS else Method
    return owner.eval_settings_from(extra)
