"""The loop as its Method sees it: LoopContext implements methods.MethodContext for the Distiller (settings,
data, fresh networks, the selector's real batches, the image step, training on real data, the stopwatch and the
random streams of each outer iteration), so that a method never touches the loop itself. Under torchrun it is one
rank's view: its classes, and the collectives that keep the network the same on every rank."""
from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any, Callable

import torch

from ..config import Config, model_options
from ..data import LoadedDataset
from ..distributed import SINGLE, World
from ..errors import DreamddError
from ..seeding import generator
from ..image_optimizer import ImageSGD
from ..synthetic import ClassRows, SyntheticSet
from ..training import build_network, make_augment, train_step
from .timing import Timings


class LoopContext:
    """The loop as its Method sees it (methods.MethodContext): settings, data, fresh networks, the selector's real
    batches, the image step, training on real data, the stopwatch and the random stream of each outer iteration."""

    def __init__(self, config: Config, data: LoadedDataset, device: torch.device, classes: list[int], selector,
                 log: Callable[[str], None], world: World = SINGLE, precision: str = "fp32"):
        self.config, self.data, self.device, self.classes = config, data, device, classes
        self.precision = precision     # resolved by the loop (fp32 or bf16)
        self.world = world
        self.selector = selector
        self.log = log
        self.timings = Timings()
        self.progress: Callable[[int], Any] = lambda steps: None    # the loop's progress bar, while it runs
        self.net_augment = make_augment(config.distill.net_augment, config.distill.net_augment_mode)
        self.start_clock(0.0, None)

    def network(self, *keys: object) -> torch.nn.Module:
        """A freshly initialised distillation network whose weights depend only on (seed, keys)."""
        info = self.data.info
        return build_network(self.config.model.name, info.num_classes, info.channels, info.image_size,
                             model_options(self.config), self.config.seed, *keys, device=self.device)

    def rng(self, it: int, *keys: object) -> torch.Generator:
        return generator(self.config.seed, "outer", it, *keys)

    def timed(self, part: str) -> AbstractContextManager[None]:
        return self.timings.part(part)

    def start_clock(self, elapsed: float, max_minutes: float | None) -> None:
        """An outer iteration starts `elapsed` seconds into the loop's wall time; the loop's deadline is
        `max_minutes` of it (None: none)."""
        now = time.perf_counter()
        self._deadline = None if max_minutes is None else now + 60 * max_minutes - elapsed
        self._step_started = now
        self.cut_short = False              # whether the deadline ended this outer iteration early
        self.inner_steps_this_iteration = 0
        self.last_step_seconds = 0.0

    def inner_step_done(self) -> bool:
        self.timings.inner_iterations += 1
        self.inner_steps_this_iteration += 1
        self.progress(1)
        now = time.perf_counter()
        step, self._step_started = now - self._step_started, now
        self.last_step_seconds = step
        if self._deadline is None:
            return True
        up = self.world.decide(now + step > self._deadline)     # rank 0's clock decides, as between iterations
        self.cut_short = self.cut_short or up
        return not up

    def real(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalized real training images on the compute device."""
        return self.data.info.normalize(self.data.train.batch(indices, self.device))

    def real_batch(self, c: int, n: int, net: torch.nn.Module | None,
                   g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        bank = self.data.train
        with self.timings.part("select"):
            idx = self.selector.select(c, bank.class_indices(c), n, net=net, images_fn=self.real, generator=g)
        real = self.real(idx)
        return real, torch.full((real.shape[0],), c, dtype=torch.long, device=real.device)

    def paired_batches(self, c: int, net: torch.nn.Module | None, synthetic: SyntheticSet | ClassRows,
                       g: torch.Generator, n_real: int,
                       augment=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        real, real_labels = self.real_batch(c, n_real, net, g)
        syn, syn_labels = synthetic.sample(c, self.config.synth.max_per_class, g)
        syn = self.data.info.normalize(syn)
        if augment is not None:
            both = augment(torch.cat([real, syn]), g, shared=True)
            real, syn = both[: real.shape[0]], both[real.shape[0]:]
        return real, real_labels, syn, syn_labels

    def image_step(self, loss: torch.Tensor, image_optimizer: torch.optim.Optimizer,
                   extra: torch.optim.Optimizer | None = None) -> torch.Tensor:
        with self.timings.part("match"):
            image_optimizer.zero_grad(set_to_none=True)
            if extra is not None:
                extra.zero_grad(set_to_none=True)
            loss.backward()
            image_optimizer.step()
            if extra is not None:
                extra.step()
        return loss.detach()

    def class_image_step(self, c: int, synthetic: SyntheticSet, image_optimizer: ImageSGD,
                         loss_of: Callable[[ClassRows], torch.Tensor]) -> torch.Tensor:
        rows = synthetic.class_rows(c)
        loss = loss_of(rows)
        with self.timings.part("match"):
            loss.backward()
            image_optimizer.class_step(c, rows.images.grad)
        return loss.detach()

    def skip_class_step(self, image_optimizer: ImageSGD) -> None:
        image_optimizer.skip_step()

    def whole_set(self, synthetic: SyntheticSet) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.world.distributed:
            return synthetic.decoded()
        images = self.world.assemble_rows(synthetic.images, synthetic.ipc)
        return SyntheticSet(images, synthetic.num_classes, synthetic.factor).decoded()

    def train_on_real(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator,
                      n_images: int) -> None:
        cfg, bank, info = self.config.distill, self.data.train, self.data.info
        seen = 0
        with self.timings.part("network"):
            while seen < n_images:
                idx = bank.sample(min(cfg.net_batch, n_images - seen), g)
                train_step(net, optimizer, self.real(idx), bank.labels[idx].to(self.device), info.num_classes, g,
                           self.net_augment, cfg.cutmix_prob, precision=self.precision, world=self.world)
                seen += len(idx)
