"""The Distiller: the loop every method shares (synthetic set, image optimizer, outer-iteration counter,
final evaluation, the artifact) with a pluggable Method (IDC, DC, DSA, DM, MTT, DREAM+) and selector (random, or
representative = DREAM). A method sees the loop only as a MethodContext (engine/context.py); progress, metrics,
periodic evaluation, snapshots, checkpoints and the time budget are callbacks (engine/callbacks.py).

Under torchrun every rank runs this loop for the classes it owns (distributed.World): each keeps the whole image
tensor but learns only its classes' rows; the set is assembled from the owners for evaluation, snapshots,
checkpoints and the artifact, and only rank 0 (the one with a run folder) writes."""
from __future__ import annotations

import dataclasses
import math
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .. import __version__, faults
from ..artifact import Distilled, save_distilled
from ..config import Config, fingerprint, model_options
from ..data import LoadedDataset, dataset_reference
from ..distributed import SINGLE, World
from ..errors import DreamddError
from ..evaluation import Evaluator
from ..image_optimizer import ImageSGD
from ..io import names
from ..methods import create_method
from ..precision import resolve as resolve_precision
from ..io.rundir import RunDir
from ..seeding import generator
from ..selection import create_selector
from ..synthetic import SyntheticSet, initial_images
from ..tables import accuracy_text
from .callbacks import Callback, Checkpoints, Metrics, PeriodicEvaluation, Progress, Snapshots, TimeBudget
from .context import LoopContext
from .timing import Timings


class Distiller:
    """Learns a SyntheticSet for `classes` (by default those `world` gives this process: all of them in one
    process) on one device; writes progress to a RunDir (rank 0's; None on the other ranks)."""

    def __init__(self, config: Config, data: LoadedDataset, device: torch.device, run: RunDir | None = None,
                 quiet: bool = True, classes: list[int] | None = None,
                 log: Callable[[str], None] | None = None, world: World = SINGLE):
        self.config, self.data, self.device, self.run_dir, self.quiet = config, data, device, run, quiet
        self.info, self.world = data.info, world
        self.classes = world.owned(self.info.num_classes) if classes is None else list(classes)
        self.log = log or (lambda message: None)
        self._check_sizes()
        self.precision = resolve_precision(config.precision, device)   # resolved once, for selector and methods
        self.selector = self._selector(config.select.selector)
        self.image_lr = config.image_lr(self.info.image_size[0])
        self.context = LoopContext(config, data, device, self.classes, self.selector, self.log, world,
                                   self.precision)
        self.method = create_method(config.match.method, self.context)
        self.image_optimizer: ImageSGD | None = None
        self.callbacks: list[Callback] = []

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
                               kmeans_init=s.kmeans_init, max_iter=s.kmeans_iter, tol=s.kmeans_tol,
                               precision=self.precision)

    def initial_set(self) -> SyntheticSet:
        """Noise, random real images, or representative real images (k-means on a fresh network's features);
        each class's choice from its own stream (seed, "init", c), made by the rank that owns the class."""
        cfg = self.config
        init = cfg.synth.init
        bank = self.data.train
        if init == "noise":
            choose = None
        else:
            selector = create_selector("random") if init == "real" else self._selector("dream")
            net = self.method.init_network() if init == "representative" else None
            owned = set(self.classes)
            bar = tqdm(total=len(owned), desc=f"init ({init})", unit="class", disable=self.quiet,
                       dynamic_ncols=True, leave=False)

            def choose(c: int, n: int) -> torch.Tensor:
                if c not in owned:    # another rank's class: its rows are assembled from that rank below
                    return torch.zeros((n, self.info.channels, *self.info.image_size), device=self.device)
                idx = selector.select(c, bank.class_indices(c), n, net=net, images_fn=self.context.real,
                                      generator=generator(cfg.seed, "init", c))
                bar.update(1)
                return bank.batch(idx, self.device)
        images = initial_images(init, self.info.num_classes, cfg.synth.ipc, cfg.synth.factor,
                                (self.info.channels, *self.info.image_size), choose,
                                generator(cfg.seed, "init-noise"), self.device)
        if choose is not None:
            bar.close()
        return SyntheticSet(self.world.assemble_rows(images, cfg.synth.ipc), self.info.num_classes, cfg.synth.factor)

    # ---- evaluation and records --------------------------------------------------------------------------
    def evaluate(self, synthetic: SyntheticSet, repeats: int, epochs: int, test: bool) -> dict[str, Any]:
        with self.timings.part("evaluate"):
            images, labels = self.context.whole_set(synthetic)
            evaluator = Evaluator.for_config(self.config, self.data, self.device, learned_lr=self.method.eval_lr(),
                                             preprocess=self.method.eval_preprocess(), quiet=self.quiet,
                                             world=self.world)
            return evaluator.evaluate(images, labels, repeats=repeats, epochs=epochs, test=test)

    def checkpoint_state(self, completed: int, synthetic: SyntheticSet) -> dict[str, Any]:
        """All a resumed run needs: every random stream is derived from (seed, iteration, ...), so no RNG bytes.
        Under torchrun the images, their optimizer's momentum and the selector's choices are gathered from the
        ranks owning each class into one ordinary checkpoint (rather than per-rank shards): a run then resumes
        with any number of processes, and a class's state is small beside what a rank holds anyway."""
        state = {"completed": completed, "images": self.world.assemble_rows(synthetic.images, synthetic.ipc).cpu(),
                 "image_optimizer": self._optimizer_state(synthetic.ipc), "timings": self.timings.as_dict(),
                 "seed": self.config.seed, "fingerprint": fingerprint(self.config),
                 "method": self.method.state_dict(), "selector": self._selector_state()}
        callbacks = {type(c).__name__: c.state_dict() for c in self.callbacks if c.state_dict()}
        if callbacks:
            state["callbacks"] = callbacks
        return state

    def _optimizer_state(self, ipc: int) -> dict[str, Any]:
        """The image optimizer's state, each class's momentum rows from the rank that owns the class."""
        state = self.image_optimizer.state_dict()
        if not self.world.distributed:
            return state
        images = self.image_optimizer.param_groups[0]["params"][0]
        buffer = state["state"].get(0, {}).get("momentum_buffer")
        buffer = torch.zeros_like(images) if buffer is None else buffer
        return {"state": {0: {"momentum_buffer": self.world.assemble_rows(buffer, ipc).cpu()}},
                "param_groups": state["param_groups"]}

    def _selector_state(self) -> dict[str, Any]:
        """The selector's state, each class's cached choice from the rank that owns the class and the counters
        summed over ranks (a resumed run's earlier counts live on rank 0: see _start)."""
        states = self.world.gather(self.selector.state_dict())
        if len(states) == 1:
            return states[0]
        merged: dict[str, Any] = {}
        for key in states[0]:
            if key == "choices":
                merged[key] = {c: choice for rank, state in enumerate(states)
                               for c, choice in state[key].items() if self.world.owner(int(c)) == rank}
            else:
                merged[key] = sum(state[key] for state in states)
        return merged

    def save_checkpoint(self, completed: int, synthetic: SyntheticSet) -> None:
        """The checkpoint after `completed` outer iterations: gathered on every rank, written by rank 0."""
        if self.run_dir is None and not self.world.distributed:
            return
        state = self.checkpoint_state(completed, synthetic)
        if self.run_dir is not None:
            self.run_dir.save_checkpoint(state)

    def metadata(self, completed: int) -> dict[str, Any]:
        cfg = self.config
        return {"dataset": self.info.to_dict(), "ipc": cfg.synth.ipc, "factor": cfg.synth.factor,
                "method": cfg.match.method, "selector": cfg.select.selector, "init": cfg.synth.init,
                "image_space": self.method.image_space, "clamped": self.method.clamps,
                "model": {"name": cfg.model.name, **model_options(cfg)}, "seed": cfg.seed,
                "iterations": completed, "preset": cfg.preset, "val_size": self.data.val_size,
                "precision": self.context.precision, "deterministic": cfg.deterministic, "compile": cfg.compile,
                "split": {"dataset": dataset_reference(cfg.data.dataset, cfg.data.root),
                          "root": str(Path(cfg.data.root).expanduser().absolute()), "val_size": cfg.data.val_size,
                          "seed": cfg.seed},
                "recipe": dataclasses.asdict(cfg.eval),
                "method_info": self.method.metadata(),
                "versions": {"dreamdd": __version__, "torch": torch.__version__.split("+")[0],
                             "python": platform.python_version()}}

    # ---- the loop ----------------------------------------------------------------------------------------
    def default_callbacks(self) -> list[Callback]:
        """The loop's behaviours, in the order their hooks run."""
        d = self.config.distill
        return [Progress(self.quiet), Metrics(), PeriodicEvaluation(d.eval_every), Snapshots(d.snapshot_every),
                Checkpoints(d.checkpoint_every), TimeBudget(d.max_minutes)]

    def run(self, resume: dict[str, Any] | None = None, final_eval: bool = True,
            initial: torch.Tensor | None = None) -> Distilled:
        """Distill from scratch (from `initial` stored images when given, else the configured initialisation) or
        from a checkpoint, to distill.iterations, or until a callback stops it (distill.max_minutes of wall
        time); return the distilled set, evaluated unless `final_eval` is False."""
        synthetic, start = self._start(resume, initial)
        self._announce(start)
        self._each("on_start", start, synthetic)
        done = start
        for it in range(start, self.config.distill.iterations):
            done, last = self._outer_iteration(it, synthetic)
            if last:
                break
        self._each("on_end", done, synthetic)
        return self._finish(done, synthetic, final_eval)

    def _each(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _start(self, resume: dict[str, Any] | None, initial: torch.Tensor | None) -> tuple[SyntheticSet, int]:
        """The set to start from and its outer iteration, with the image optimizer, method, selector and
        callbacks restored from `resume` (a checkpoint) when given."""
        cfg = self.config
        start = 0
        if resume is not None:
            start = int(resume["completed"])
            synthetic = SyntheticSet(resume["images"].to(self.device), self.info.num_classes, cfg.synth.factor)
            self.timings = Timings.restored(resume.get("timings", {}))
        elif initial is not None:
            synthetic = SyntheticSet(initial.to(self.device), self.info.num_classes, cfg.synth.factor)
        else:
            synthetic = self.initial_set()
        self.image_optimizer = ImageSGD(synthetic.images, self.image_lr, cfg.synth.momentum,
                                        self.method.image_preconditioner(), classes=self.info.num_classes)
        self.callbacks = self.default_callbacks()
        if resume is not None:
            self.image_optimizer.load_state_dict(resume["image_optimizer"])
            self.method.load_state_dict(resume.get("method", {}))
            selector = resume.get("selector", {})
            if not self.world.is_main:   # the counters so far are rank 0's; the others count from zero
                selector = {"choices": selector["choices"]} if "choices" in selector else {}
            self.selector.load_state_dict(selector)
            saved = resume.get("callbacks", {})
            for callback in self.callbacks:
                callback.load_state_dict(saved.get(type(callback).__name__, {}))
        return synthetic, start

    def _announce(self, start: int) -> None:
        cfg, e = self.config, self.config.eval
        self.log(f"distilling {self.info.name}: IPC {cfg.synth.ipc}, factor {cfg.synth.factor}, method "
                 f"{cfg.match.method}, selector {cfg.select.selector}, init {cfg.synth.init}, image lr "
                 f"{self.image_lr:.3g} ({self.method.image_space} space"
                 f"{', clamped to [0, 1]' if self.method.clamps else ', never clamped'}), iterations "
                 f"{start}->{cfg.distill.iterations}, device {self.device}")
        owners = self.world.gather(self.classes)
        if len(owners) > 1:
            self.log("classes by rank: " + "; ".join(f"{rank}: {' '.join(map(str, classes))}"
                                                     for rank, classes in enumerate(owners)))
        self.log(f"evaluation: protocol {e.protocol}, augmentation {e.augment or 'none'} (mode {e.augment_mode}), "
                 f"CutMix p {e.cutmix_prob}, {e.epochs} epochs, batch {e.batch}")

    def _outer_iteration(self, it: int, synthetic: SyntheticSet) -> tuple[int, bool]:
        """Outer iteration `it` and its callbacks; (iterations done, whether it was the last)."""
        t0 = time.perf_counter()
        self.context.start_clock(self.timings.elapsed, self.config.distill.max_minutes)
        if self.method.clamps:
            synthetic.clamp_()
        if self.method.reselects_every_iteration:
            self.selector.reset()         # the matching network is new: cached choices are stale
        loss = self.method.outer_iteration(it, synthetic, self.image_optimizer)
        self.image_optimizer.flush()      # every class's owed momentum steps, before anything reads the images
        loss = float(loss)                # the one read per outer iteration
        if not math.isfinite(loss):
            raise DreamddError(f"the matching loss became {loss} in outer iteration {it}; lower the image learning "
                               "rate (--set synth.lr=...) or check the data")
        if self.world.distributed:    # where the tests stop one rank (not a write point of one process)
            faults.reached(f"outer-iteration@rank{self.world.rank}")
        loss = self.world.weighted_mean(loss, len(self.classes))     # the mean over all classes
        done = it + 1
        self._each("on_step_end", done, synthetic, loss, time.perf_counter() - t0)
        iteration_seconds = time.perf_counter() - t0
        self.timings.elapsed += iteration_seconds
        stop = [c.stop_after(self, done, iteration_seconds) for c in self.callbacks]    # every callback is asked
        last = done == self.config.distill.iterations or self.world.decide(any(stop))   # rank 0's clock decides
        self._each("on_iteration_end", done, synthetic, last)
        return done, last

    def _finish(self, done: int, synthetic: SyntheticSet, final_eval: bool) -> Distilled:
        """The artifact after `done` outer iterations, with the final evaluation (test split) unless told not."""
        counts = self.world.gather(self.selector.timings())
        self.timings.extra.update({key: sum(c[key] for c in counts) for key in counts[0]})
        if self.method.clamps:
            synthetic.clamp_()
        distilled = self.distilled(done, synthetic)
        if final_eval:
            result = self.evaluate(synthetic, self.config.eval.repeats, self.config.eval.epochs, test=True)
            distilled.metadata["evaluation"] = result
            self.record({"event": "eval", "iteration": done, "final": True,
                         **{k: result[k] for k in ("val_mean", "val_std", "test_mean", "test_std", "test_last_mean",
                                                   "test_last_std", "repeats", "epochs", "protocol") if k in result}})
            self.log(f"final: {accuracy_text(result)}")
        return distilled

    def distilled(self, completed: int, synthetic: SyntheticSet) -> Distilled:
        """The set after `completed` outer iterations as an artifact (images, labels, metadata, method tensors);
        pixels outside [0, 1] stay for methods that never clamp (evaluation normalizes them as they are)."""
        images = self.world.assemble_rows(synthetic.images, synthetic.ipc)
        return Distilled((images.clamp(0, 1) if self.method.clamps else images).cpu(), synthetic.labels.cpu(),
                         self.metadata(completed), dict(self.method.artifact_tensors()))

    def save_snapshot(self, completed: int, synthetic: SyntheticSet) -> None:
        """snapshots/iter-NNNNNN/ in the run folder: the set after `completed` outer iterations, with the loop's
        wall time so far, for accuracy-against-iteration and against-time curves evaluated after the run."""
        if self.run_dir is None and not self.world.distributed:
            return
        distilled = self.distilled(completed, synthetic)     # on every rank: the set is assembled from all
        if self.run_dir is None:
            return
        distilled.metadata["elapsed_seconds"] = self.timings.elapsed
        save_distilled(self.run_dir.file(names.snapshot(completed)), distilled)

    def record(self, event: dict[str, Any]) -> None:
        """An event for the run's metrics.jsonl (nothing without a run folder)."""
        if self.run_dir is not None:
            self.run_dir.log_event(event)
