"""The Distiller: the loop every method shares (synthetic set, image optimizer, outer-iteration counter,
checkpoints, evaluation, records) with a pluggable Method (IDC, DC, DSA, DM, MTT, DREAM+) and selector
(random, or representative = DREAM). A method sees the loop only as a MethodContext (LoopContext here)."""
from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from . import __version__
from .artifact import Distilled, save_distilled
from .config import Config, eval_model, fingerprint, model_options
from .data import LoadedDataset, dataset_reference
from .errors import DreamddError
from .evaluation import evaluate_images
from .image_optimizer import ImageSGD
from .methods import create_method
from .rundir import RunDir
from .seeding import generator
from .selection import create_selector
from .synthetic import SyntheticSet, initial_images
from .tables import accuracy_text
from .timing import Timings
from .training import build_network, make_augment, train_step


def room_for_another(elapsed: float, last_iteration: float, max_minutes: float | None) -> bool:
    """Whether an outer iteration as long as the last one (seconds) still ends within the wall-time budget
    (None: no budget), so that a run given M minutes finishes within M minutes rather than overshooting by up to
    one outer iteration."""
    return max_minutes is None or elapsed + last_iteration <= 60 * max_minutes


class LoopContext:
    """The loop as its Method sees it (methods.MethodContext): settings, data, fresh networks, the selector's real
    batches, the image step, training on real data, the stopwatch and the random stream of each outer iteration."""

    def __init__(self, config: Config, data: LoadedDataset, device: torch.device, classes: list[int], selector,
                 log: Callable[[str], None]):
        self.config, self.data, self.device, self.classes = config, data, device, classes
        self.selector = selector
        self.log = log
        self.timings = Timings()
        self.progress: Callable[[int], Any] = lambda steps: None    # the loop's progress bar, while it runs
        self.net_augment = make_augment(config.distill.net_augment, config.distill.net_augment_mode)

    def network(self, *keys: object) -> torch.nn.Module:
        """A freshly initialised distillation network whose weights depend only on (seed, keys)."""
        info = self.data.info
        return build_network(self.config.model.name, info.num_classes, info.channels, info.image_size,
                             model_options(self.config), self.config.seed, *keys, device=self.device)

    def rng(self, it: int) -> torch.Generator:
        return generator(self.config.seed, "outer", it)

    def timed(self, part: str) -> AbstractContextManager[None]:
        return self.timings.part(part)

    def inner_step_done(self) -> None:
        self.timings.inner_iterations += 1
        self.progress(1)

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

    def paired_batches(self, c: int, net: torch.nn.Module | None, synthetic: SyntheticSet, g: torch.Generator,
                       n_real: int, augment=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        real, real_labels = self.real_batch(c, n_real, net, g)
        syn, syn_labels = synthetic.sample(c, self.config.synth.max_per_class, g)
        syn = self.data.info.normalize(syn)
        if augment is not None:
            both = augment(torch.cat([real, syn]), g, shared=True)
            real, syn = both[: real.shape[0]], both[real.shape[0]:]
        return real, real_labels, syn, syn_labels

    def image_step(self, loss: torch.Tensor, image_optimizer: torch.optim.Optimizer, it: int, where: str = "",
                   extra: torch.optim.Optimizer | None = None) -> float:
        if not torch.isfinite(loss):
            raise DreamddError(f"the matching loss became {float(loss.detach())} at outer iteration {it}{where}; "
                               "lower the image learning rate (--set synth.lr=...) or check the data")
        with self.timings.part("match"):
            image_optimizer.zero_grad(set_to_none=True)
            if extra is not None:
                extra.zero_grad(set_to_none=True)
            loss.backward()
            image_optimizer.step()
            if extra is not None:
                extra.step()
        return float(loss.detach())

    def train_on_real(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator,
                      n_images: int) -> None:
        cfg, bank, info = self.config.distill, self.data.train, self.data.info
        seen = 0
        with self.timings.part("network"):
            while seen < n_images:
                idx = bank.sample(min(cfg.net_batch, n_images - seen), g)
                train_step(net, optimizer, self.real(idx), bank.labels[idx].to(self.device), info.num_classes, g,
                           self.net_augment, cfg.cutmix_prob)
                seen += len(idx)


class Distiller:
    """Learns a SyntheticSet for `classes` (all by default) on one device; writes progress to a RunDir."""

    def __init__(self, config: Config, data: LoadedDataset, device: torch.device, run: RunDir | None = None,
                 quiet: bool = True, classes: list[int] | None = None,
                 log: Callable[[str], None] | None = None):
        self.config, self.data, self.device, self.run_dir, self.quiet = config, data, device, run, quiet
        self.info = data.info
        self.classes = list(range(self.info.num_classes)) if classes is None else list(classes)
        self.log = log or (lambda message: None)
        self._check_sizes()
        self.selector = self._selector(config.select.selector)
        self.image_lr = config.image_lr(self.info.image_size[0])
        self.context = LoopContext(config, data, device, self.classes, self.selector, self.log)
        self.method = create_method(config.match.method, self.context)

    @property
    def timings(self) -> Timings:
        return self.context.timings

    @timings.setter
    def timings(self, value: Timings) -> None:
        self.context.timings = value

    # ---- set-up ------------------------------------------------------------------------------------------
    def _check_sizes(self) -> None:
        factor, size = self.config.synth.factor, min(self.info.image_size)
        if factor > size:
            raise DreamddError(f"synth.factor {factor} is larger than the {size}-pixel side of {self.info.name}'s "
                               f"images, so a tile would be empty; lower synth.factor to at most {size}")
        counts = self.data.train.class_counts()
        smallest = min(counts[c] for c in self.classes)
        if self.config.synth.ipc > smallest:
            raise DreamddError(f"IPC {self.config.synth.ipc} is larger than the smallest class of "
                               f"{self.info.name}'s training split ({smallest} images); lower --ipc "
                               "(or data.val_size, which takes images away from training)")

    def _selector(self, name: str):
        s = self.config.select
        if name == "random":
            return create_selector("random")
        return create_selector("dream", per_cluster=s.per_cluster, interval=s.interval, pool_size=s.pool_size,
                               kmeans_init=s.kmeans_init, max_iter=s.kmeans_iter, tol=s.kmeans_tol)

    def initial_set(self) -> SyntheticSet:
        """Noise, random real images, or representative real images (k-means on a fresh network's features)."""
        cfg = self.config
        init = cfg.synth.init
        bank = self.data.train
        if init == "noise":
            choose = None
        else:
            selector = create_selector("random") if init == "real" else self._selector("dream")
            net = self.method.init_network() if init == "representative" else None
            g = generator(cfg.seed, "init")

            bar = tqdm(total=self.info.num_classes, desc=f"init ({init})", unit="class", disable=self.quiet,
                       dynamic_ncols=True, leave=False)

            def choose(c: int, n: int) -> torch.Tensor:
                idx = selector.select(c, bank.class_indices(c), n, net=net, images_fn=self.context.real, generator=g)
                bar.update(1)
                return bank.batch(idx, self.device)
        images = initial_images(init, self.info.num_classes, cfg.synth.ipc, cfg.synth.factor,
                                (self.info.channels, *self.info.image_size), choose,
                                generator(cfg.seed, "init-noise"), self.device)
        if choose is not None:
            bar.close()
        return SyntheticSet(images, self.info.num_classes, cfg.synth.factor)

    # ---- evaluation and records --------------------------------------------------------------------------
    def evaluate(self, synthetic: SyntheticSet, repeats: int, epochs: int, test: bool) -> dict[str, Any]:
        with self.timings.part("evaluate"):
            images, labels = synthetic.decoded()
            model, options = eval_model(self.config)
            return evaluate_images(images, labels, self.data, model, options, self.config.eval, self.config.seed,
                                   self.device, repeats=repeats, epochs=epochs, test=test, quiet=self.quiet,
                                   preprocess=self.method.eval_preprocess(), learned_lr=self.method.eval_lr())

    def periodic_evaluation(self, done: int, synthetic: SyntheticSet) -> None:
        """Validation accuracy of the set after `done` outer iterations (distill.eval_repeats networks of
        distill.eval_epochs epochs), recorded as an eval event."""
        cfg = self.config.distill
        result = self.evaluate(synthetic, cfg.eval_repeats, cfg.eval_epochs or self.config.eval.epochs, test=False)
        self._record({"event": "eval", "iteration": done, "val_mean": result["val_mean"],
                      "val_std": result["val_std"], "repeats": result["repeats"], "epochs": result["epochs"],
                      "protocol": result["protocol"]})
        self.log(f"iteration {done}: validation accuracy {result['val_mean']:.2f}")

    def checkpoint_state(self, completed: int, synthetic: SyntheticSet, image_optimizer) -> dict[str, Any]:
        """All a resumed run needs: every random stream is derived from (seed, iteration), so no RNG bytes."""
        return {"completed": completed, "images": synthetic.images.detach().cpu(),
                "image_optimizer": image_optimizer.state_dict(), "timings": self.timings.as_dict(),
                "seed": self.config.seed, "fingerprint": fingerprint(self.config),
                "method": self.method.state_dict(),
                "selector": self.selector.state_dict()}

    def metadata(self, completed: int) -> dict[str, Any]:
        cfg = self.config
        return {"dataset": self.info.to_dict(), "ipc": cfg.synth.ipc, "factor": cfg.synth.factor,
                "method": cfg.match.method, "selector": cfg.select.selector, "init": cfg.synth.init,
                "image_space": self.method.image_space, "clamped": self.method.clamps,
                "model": {"name": cfg.model.name, **model_options(cfg)}, "seed": cfg.seed,
                "iterations": completed, "preset": cfg.preset, "val_size": self.data.val_size,
                "split": {"dataset": dataset_reference(cfg.data.dataset, cfg.data.root),
                          "root": str(Path(cfg.data.root).expanduser().absolute()), "val_size": cfg.data.val_size,
                          "seed": cfg.seed},
                "recipe": dataclasses.asdict(cfg.eval),
                "method_info": self.method.metadata(),
                "versions": {"dreamdd": __version__, "torch": torch.__version__.split("+")[0],
                             "python": platform.python_version()}}

    # ---- the loop ----------------------------------------------------------------------------------------
    def run(self, resume: dict[str, Any] | None = None, final_eval: bool = True,
            initial: torch.Tensor | None = None) -> Distilled:
        """Distill from scratch (from `initial` stored images when given, else the configured initialisation) or
        from a checkpoint, to distill.iterations, or until another outer iteration would end after
        distill.max_minutes of wall time; return the distilled set."""
        cfg = self.config
        start = 0
        if resume is None and initial is not None:
            synthetic = SyntheticSet(initial.to(self.device), self.info.num_classes, cfg.synth.factor)
        elif resume is None:
            synthetic = self.initial_set()
        else:
            start = int(resume["completed"])
            synthetic = SyntheticSet(resume["images"].to(self.device), self.info.num_classes, cfg.synth.factor)
            self.timings = Timings.restored(resume.get("timings", {}))
        image_optimizer = ImageSGD(synthetic.images, self.image_lr, cfg.synth.momentum,
                                   self.method.image_preconditioner())
        if resume is not None:
            image_optimizer.load_state_dict(resume["image_optimizer"])
            self.method.load_state_dict(resume.get("method", {}))
            self.selector.load_state_dict(resume.get("selector", {}))
        self.log(f"distilling {self.info.name}: IPC {cfg.synth.ipc}, factor {cfg.synth.factor}, method "
                 f"{cfg.match.method}, selector {cfg.select.selector}, init {cfg.synth.init}, image lr "
                 f"{self.image_lr:.3g} ({self.method.image_space} space"
                 f"{', clamped to [0, 1]' if self.method.clamps else ', never clamped'}), iterations {start}->{cfg.distill.iterations}, device {self.device}")
        periodic = bool(cfg.distill.eval_every) and len(self.data.val) > 0
        if cfg.distill.eval_every and not periodic:
            self.log("no validation split (data.val_size=0): periodic evaluation is off, and the final evaluation "
                     "can only report the test accuracy after the last epoch")
        e = cfg.eval
        self.log(f"evaluation: protocol {e.protocol}, augmentation {e.augment or 'none'} (mode {e.augment_mode}), "
                 f"CutMix p {e.cutmix_prob}, {e.epochs} epochs, batch {e.batch}")
        if periodic and start == 0:    # the initial set, so that every curve shows what the loop adds to it
            self.periodic_evaluation(0, synthetic)
        if start == 0 and cfg.distill.snapshot_every:
            self.save_snapshot(0, synthetic)
        steps = self.method.steps_per_iteration()
        bar = tqdm(total=cfg.distill.iterations * steps, initial=start * steps,
                   desc="distill", unit="inner", disable=self.quiet, dynamic_ncols=True)
        self.context.progress = bar.update
        done = start
        for it in range(start, cfg.distill.iterations):
            t0 = time.perf_counter()
            if self.method.clamps:
                synthetic.clamp_()
            if self.method.reselects_every_iteration:
                self.selector.reset()         # the matching network is new: cached choices are stale
            loss = self.method.outer_iteration(it, synthetic, image_optimizer)
            bar.set_postfix(outer=it + 1, loss=f"{loss:.4g}")
            event = {"event": "iteration", "iteration": it + 1, "loss": loss, "seconds": time.perf_counter() - t0}
            self._record(event)
            done = it + 1
            evaluated = periodic and done % cfg.distill.eval_every == 0
            if evaluated:
                self.periodic_evaluation(done, synthetic)
            iteration_seconds = time.perf_counter() - t0
            self.timings.elapsed += iteration_seconds
            out_of_time = not room_for_another(self.timings.elapsed, iteration_seconds, cfg.distill.max_minutes)
            last = done == cfg.distill.iterations or out_of_time
            if periodic and last and not evaluated:    # every curve ends at the last iteration
                self.periodic_evaluation(done, synthetic)
            if cfg.distill.snapshot_every and (done % cfg.distill.snapshot_every == 0 or last):
                self.save_snapshot(done, synthetic)
            if self.run_dir is not None and (done % cfg.distill.checkpoint_every == 0 or last):
                self.run_dir.save_checkpoint(self.checkpoint_state(done, synthetic, image_optimizer))
            if out_of_time and done != cfg.distill.iterations:
                self.log(f"stopping after outer iteration {done} ({self.timings.elapsed / 60:.1f} min): another "
                         f"({iteration_seconds / 60:.1f} min) would end after distill.max_minutes = "
                         f"{cfg.distill.max_minutes}")
                self._record({"event": "stopped", "iteration": done, "reason": "max_minutes",
                              "elapsed": self.timings.elapsed})
                break
        bar.close()
        self.context.progress = lambda steps: None
        self.timings.extra.update(self.selector.timings())
        if self.method.clamps:
            synthetic.clamp_()
        distilled = self.distilled(done, synthetic)
        if final_eval:
            result = self.evaluate(synthetic, cfg.eval.repeats, cfg.eval.epochs, test=True)
            distilled.metadata["evaluation"] = result
            self._record({"event": "eval", "iteration": done, "final": True,
                          **{k: result[k] for k in ("val_mean", "val_std", "test_mean", "test_std", "test_last_mean",
                                                    "test_last_std", "repeats", "epochs", "protocol") if k in result}})
            self.log(f"final: {accuracy_text(result)}")
        return distilled

    def distilled(self, completed: int, synthetic: SyntheticSet) -> Distilled:
        """The set after `completed` outer iterations as an artifact (images, labels, metadata, method tensors);
        pixels outside [0, 1] stay for methods that never clamp (evaluation normalizes them as they are)."""
        images = synthetic.images.detach()
        return Distilled((images.clamp(0, 1) if self.method.clamps else images).cpu(), synthetic.labels.cpu(),
                         self.metadata(completed), dict(self.method.artifact_tensors()))

    def save_snapshot(self, completed: int, synthetic: SyntheticSet) -> None:
        """snapshots/iter-NNNNNN/ in the run folder: the set after `completed` outer iterations, with the loop's
        wall time so far, for accuracy-against-iteration and against-time curves evaluated after the run."""
        if self.run_dir is None:
            return
        distilled = self.distilled(completed, synthetic)
        distilled.metadata["elapsed_seconds"] = self.timings.elapsed
        save_distilled(self.run_dir.file(f"snapshots/iter-{completed:06d}"), distilled)

    def _record(self, event: dict[str, Any]) -> None:
        if self.run_dir is not None:
            self.run_dir.log_event(event)
