"""Evaluation: fresh networks trained on a (decoded) synthetic set under a named protocol (dreamdd.protocols).
Two test numbers per network, neither chosen on test: at the checkpoint chosen on the validation split, and after
the last epoch (the only one when there is no validation split).

An Evaluator holds what every evaluation of a set needs (the data, the recipe, the network, the device, the seed
and what the set's method learned: a learning rate, an input transform); the recipe and the network are resolved
here, once (resolve_recipe, evaluation_network), for distillation, coresets, artifacts and the whole dataset."""
from __future__ import annotations

import copy
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from . import compilation
from .config import (Config, EvalConfig, default_preset, load_preset, merge, model_options, protocol_eval,
                     validate)
from .data import ClassBank, DatasetInfo, LoadedDataset
from .distributed import SINGLE, World
from .errors import DreamddError
from .precision import autocast
from .precision import resolve as resolve_precision
from .protocols import describe, lr_milestones
from .seeding import generator
from .training import accuracy, build_network, make_augment, sgd, train_step


class TensorTrainingSet:
    """Images already in memory (a distilled set or a coreset), normalized once on the compute device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, device: torch.device):
        self.images = info.normalize(images.to(device).float())
        self.labels = labels.to(device)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def fetch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx.to(self.images.device)]


class BankTrainingSet:
    """A uint8 ClassBank (e.g. the whole training split), converted batch by batch so memory stays bounded."""

    def __init__(self, bank: ClassBank, info: DatasetInfo, device: torch.device):
        self.bank, self.info, self.device = bank, info, device
        self.labels = bank.labels.to(device)

    def __len__(self) -> int:
        return len(self.bank)

    def fetch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.info.normalize(self.bank.batch(idx.cpu(), self.device))


def split_accuracy(net: torch.nn.Module, data: LoadedDataset, bank: ClassBank, device: torch.device) -> float:
    return accuracy(net, lambda idx: data.info.normalize(bank.batch(idx, device)), bank.labels)


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _worker_init(threads: int, compiled: bool) -> None:
    torch.set_num_threads(threads)
    compilation.set_enabled(compiled)      # the parent's --compile holds in its worker processes


@dataclass
class Evaluator:
    """Trains fresh `model` networks on a set under `recipe` and tests them on `data`'s splits, on `device`, with
    every network's weights and batches derived from `seed`. `learned_lr` (a set's learned rate) replaces
    recipe.lr when the protocol asks for it (recipe.learned_lr); `preprocess` is a fixed input transform the set
    was distilled with (MTT's ZCA whitening). `workers` > 1 trains the networks in parallel processes (CPU);
    under torchrun (`world`) the ranks share the networks out and every rank gets every result. `precision`
    (fp32, bf16 or auto, resolved on construction) is what the training steps and the validation passes run in;
    the test accuracies are always measured in fp32."""
    data: LoadedDataset
    recipe: EvalConfig
    device: torch.device
    seed: int = 0
    model: str = "convnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    learned_lr: float | None = None
    preprocess: torch.nn.Module | None = None
    workers: int = 1
    quiet: bool = True
    world: World = SINGLE
    precision: str = "fp32"

    def __post_init__(self):
        self.precision = resolve_precision(self.precision, self.device)

    @classmethod
    def for_config(cls, config: Config, data: LoadedDataset, device: torch.device, *, learned_lr: float | None = None,
                   preprocess: torch.nn.Module | None = None, quiet: bool = True,
                   world: World = SINGLE) -> "Evaluator":
        """The evaluation a distillation or coreset run's settings ask for (its eval section and network)."""
        model, options = evaluation_network({"name": config.model.name, **model_options(config)}, config.eval)
        return cls(data, config.eval, device, config.seed, model, options, learned_lr, preprocess, quiet=quiet,
                   precision=config.precision, world=world)

    def with_model(self, model: str, options: dict[str, Any]) -> "Evaluator":
        return replace(self, model=model, model_options=options)

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor, **options: Any) -> dict[str, Any]:
        """Evaluate images with pixels in [0, 1] (a decoded distilled set or a coreset); see evaluate_training_set."""
        info = self.data.info
        if tuple(images.shape[1:]) != (info.channels, *info.image_size):
            raise DreamddError(f"images of shape {tuple(images.shape[1:])} do not fit dataset {info.name} "
                               f"({info.channels}x{info.image_size[0]}x{info.image_size[1]})")
        return self.evaluate_training_set(TensorTrainingSet(images, labels, info, self.device), **options)

    def evaluate_training_set(self, trainset: TensorTrainingSet | BankTrainingSet, repeats: int | None = None,
                              epochs: int | None = None, test: bool = True,
                              runs: list[int] | None = None) -> dict[str, Any]:
        """Mean and std over `repeats` fresh networks (or the run indices in `runs`) trained on `trainset`:
        'test_mean' at the checkpoints chosen on validation (absent without a validation split) and
        'test_last_mean' after the last epoch; 'protocol' names the recipe's protocol and what departs from it."""
        cfg, data = self.recipe, self.data
        repeats = cfg.repeats if repeats is None else repeats
        epochs = cfg.epochs if epochs is None else epochs
        if repeats < 1 or epochs < 1:
            raise DreamddError("evaluation needs at least one repeat and one epoch")
        runs = list(range(repeats)) if runs is None else runs
        results = self.train_networks(trainset, runs, epochs, test)
        val_mean, val_std = mean_std([r["val_acc"] for r in results])
        recipe = asdict(cfg) | {"epochs": epochs, "repeats": len(results)}
        summary: dict[str, Any] = {"model": self.model, "model_options": self.model_options, "repeats": len(results),
                                   "epochs": epochs, "val_mean": val_mean, "val_std": val_std, "runs": results,
                                   "val_size": len(data.val), "train_size": len(trainset),
                                   "precision": self.precision,
                                   "protocol": describe(recipe, protocol_eval(cfg.protocol, data.info.name)),
                                   "recipe": recipe,
                                   "checkpoint": "chosen on validation, and last epoch" if len(data.val)
                                   else "last epoch (no validation split)"}
        if test:
            summary["test_last_mean"], summary["test_last_std"] = mean_std([r["test_acc_last"] for r in results])
            if len(data.val):
                summary["test_mean"], summary["test_std"] = mean_std([r["test_acc"] for r in results])
        return summary

    def train_networks(self, trainset, runs: list[int], epochs: int, test: bool) -> list[dict[str, Any]]:
        """Train the networks `runs` (indices: each one's seed stream, so the results do not depend on who
        trains them): under torchrun rank r trains runs r, r + N, ... and the results are gathered."""
        if not self.world.distributed:
            return self.train_local(trainset, runs, epochs, test)
        mine = [{**result, "rank": self.world.rank}
                for result in self.train_local(trainset, runs[self.world.rank::self.world.size], epochs, test)]
        results = {r["run"]: r for part in self.world.gather(mine) for r in part}
        return [results[r] for r in runs]

    def train_local(self, trainset, runs: list[int], epochs: int, test: bool) -> list[dict[str, Any]]:
        """Train the networks `runs` in this process; in `workers` processes when > 1 (CPU)."""
        if not runs:
            return []
        bar = tqdm(total=len(runs) * epochs, desc=f"evaluate {self.model}", unit="epoch", disable=self.quiet,
                   leave=False)
        try:
            if self.workers <= 1 or len(runs) == 1 or self.device.type != "cpu":
                return [self.train_and_test(trainset, r, epochs, test, bar) for r in runs]
            workers = min(self.workers, len(runs))
            threads = max(1, (os.cpu_count() or 1) // workers)
            context = torch.multiprocessing.get_context("spawn")
            results = {}
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                     initargs=(threads, compilation.enabled())) as pool:
                futures = {pool.submit(self.train_and_test, trainset, r, epochs, test): r for r in runs}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(epochs)
            return [results[r] for r in runs]
        finally:
            bar.close()

    def train_and_test(self, trainset, run_index: int, epochs: int, test: bool = True,
                       progress: tqdm | None = None) -> dict[str, Any]:
        """Train one fresh network; keep the best validation checkpoint (stopping early after `recipe.patience`
        validation passes without improvement, when set); test the last epoch's network and that checkpoint, once
        each."""
        cfg, data, device = self.recipe, self.data, self.device
        net, lr = self._network(run_index)
        optimizer = sgd(net, lr, cfg.momentum, cfg.weight_decay)
        milestones, gamma = lr_milestones(cfg.lr_schedule, epochs)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
        augment = make_augment(cfg.augment, cfg.augment_mode)
        g = generator(self.seed, "eval-batches", self.model, run_index)
        n, has_val = len(trainset), len(data.val) > 0
        best_val, best_epoch, best_state, stale = -1.0, epochs, None, 0
        started = time.perf_counter()
        epoch = 0
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=g)
            for start in range(0, n, cfg.batch):
                idx = order[start:start + cfg.batch]
                loss = float(train_step(net, optimizer, trainset.fetch(idx),
                                        trainset.labels[idx.to(trainset.labels.device)], data.info.num_classes, g,
                                        augment, cfg.cutmix_prob, cfg.cutmix_beta, self.precision))
                if not math.isfinite(loss):
                    raise DreamddError(f"evaluation loss became {loss} at epoch {epoch}; the training images may "
                                       "hold extreme values (check their normalization), or lower eval.lr")
            scheduler.step()
            if progress is not None:
                progress.update(1)
            if has_val and (epoch % cfg.val_every == 0 or epoch == epochs):
                with autocast(self.precision, device):
                    val = split_accuracy(net, data, data.val, device)
                stale = 0 if val > best_val else stale + 1
                if val >= best_val:   # ties go to the later (longer-trained) checkpoint
                    best_val, best_epoch, best_state = val, epoch, copy.deepcopy(net.state_dict())
                if cfg.patience and stale >= cfg.patience:
                    break
        if progress is not None and epoch < epochs:
            progress.update(epochs - epoch)
        result = {"run": run_index, "val_acc": best_val if has_val else float("nan"),
                  "epoch": best_epoch if has_val else None, "epochs_trained": epoch, "lr": lr,
                  "seconds": time.perf_counter() - started}
        if test:
            result["test_acc_last"] = split_accuracy(net, data, data.test, device)
            if best_state is not None:
                net.load_state_dict(best_state)
                result["test_acc"] = split_accuracy(net, data, data.test, device)
        return result

    def _network(self, run_index: int) -> tuple[torch.nn.Module, float]:
        """Network `run_index` (its weights from (seed, model, run_index)) and the learning rate it trains with."""
        info = self.data.info
        net = build_network(self.model, info.num_classes, info.channels, info.image_size, self.model_options,
                            self.seed, "eval", self.model, run_index, device=self.device)
        if self.preprocess is not None:   # a fixed input transform the set was distilled with (MTT's ZCA whitening)
            from .zca import Preprocessed
            net = Preprocessed(self.preprocess.to(self.device), net)
        lr = self.learned_lr if self.recipe.learned_lr and self.learned_lr is not None else self.recipe.lr
        return net, lr


# ---- the recipe and the network, resolved once ----------------------------------------------------------------
def evaluation_network(distilled_with: dict[str, Any], recipe: EvalConfig,
                       asked: str | None = None) -> tuple[str, dict[str, Any]]:
    """The evaluation network: asked for, else the recipe's (eval.model), else the network the set was distilled
    with ({"name": ..., options}), which alone keeps its options."""
    options = dict(distilled_with)
    distill_model = options.pop("name")
    name = asked or recipe.model or distill_model
    return name, (options if name == distill_model else {})


def resolve_recipe(stored: dict[str, Any], dataset: str, overrides: dict[str, Any] | None,
                   protocol: str | None = None) -> EvalConfig:
    """The evaluation recipe of a set: its own (`stored`: the run's), else the dataset's preset; then a named
    protocol's settings (for this dataset: config.protocol_eval), then `overrides` (eval section)."""
    config = Config()
    if not stored:
        preset = default_preset(dataset, None)
        merge(config, {"eval": load_preset(preset).get("eval", {})}, origin=f"preset {preset}")
    stored = {k: v for k, v in stored.items() if k in EvalConfig.__dataclass_fields__}
    if stored and "protocol" not in stored:   # written before protocols had names: its settings, unnamed
        stored["protocol"] = "idc"
    merge(config, {"eval": stored}, origin="artifact recipe")
    if protocol is not None:
        merge(config, {"eval": {"protocol": protocol, **protocol_eval(protocol, dataset)}}, origin="--protocol")
    if overrides:
        merge(config, overrides, origin="--set")
        validate(config)
    return config.eval
