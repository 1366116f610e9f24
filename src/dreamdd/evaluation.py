"""Evaluation: fresh networks trained on a (decoded) synthetic set under a named protocol (dreamdd.protocols).
Two test numbers per network, neither chosen on test: at the checkpoint chosen on the validation split, and after
the last epoch (the only one when there is no validation split)."""
from __future__ import annotations

import copy
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import EvalConfig, protocol_eval
from .data import ClassBank, DatasetInfo, LoadedDataset
from .errors import DreamddError
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


def train_and_test(trainset: TensorTrainingSet | BankTrainingSet, data: LoadedDataset, model: str,
                   model_options: dict, cfg: EvalConfig, seed: int, run_index: int, device: torch.device,
                   epochs: int, test: bool = True, progress: tqdm | None = None,
                   preprocess: torch.nn.Module | None = None, learned_lr: float | None = None) -> dict[str, Any]:
    """Train one fresh network; keep the best validation checkpoint (stopping early after `cfg.patience`
    validation passes without improvement, when set); test the last epoch's network and that checkpoint, once
    each. `learned_lr` (a set's learned rate) replaces cfg.lr when the protocol asks for it (cfg.learned_lr)."""
    info = data.info
    net = build_network(model, info.num_classes, info.channels, info.image_size, model_options,
                        seed, "eval", model, run_index, device=device)
    if preprocess is not None:   # a fixed input transform the set was distilled with (MTT's ZCA whitening)
        from .zca import Preprocessed
        net = Preprocessed(preprocess.to(device), net)
    lr = learned_lr if cfg.learned_lr and learned_lr is not None else cfg.lr
    optimizer = sgd(net, lr, cfg.momentum, cfg.weight_decay)
    milestones, gamma = lr_milestones(cfg.lr_schedule, epochs)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    augment = make_augment(cfg.augment, cfg.augment_mode)
    g = generator(seed, "eval-batches", model, run_index)
    n = len(trainset)
    has_val = len(data.val) > 0
    best_val, best_epoch, best_state, stale = -1.0, epochs, None, 0
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, cfg.batch):
            idx = order[start:start + cfg.batch]
            loss = train_step(net, optimizer, trainset.fetch(idx), trainset.labels[idx.to(trainset.labels.device)],
                              info.num_classes, g, augment, cfg.cutmix_prob, cfg.cutmix_beta)
            if not math.isfinite(loss):
                raise DreamddError(f"evaluation loss became {loss} at epoch {epoch}; the training images may "
                                   "hold extreme values (check their normalization), or lower eval.lr")
        scheduler.step()
        if progress is not None:
            progress.update(1)
        if has_val and (epoch % cfg.val_every == 0 or epoch == epochs):
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


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def run_repeats(trainset, data: LoadedDataset, model: str, model_options: dict, cfg: EvalConfig, seed: int,
                device: torch.device, runs: list[int], epochs: int, test: bool, quiet: bool,
                workers: int = 1, preprocess: torch.nn.Module | None = None,
                learned_lr: float | None = None) -> list[dict[str, Any]]:
    """Train the networks `runs` (indices: each one's seed stream); in `workers` processes when > 1 (CPU)."""
    bar = tqdm(total=len(runs) * epochs, desc=f"evaluate {model}", unit="epoch", disable=quiet, leave=False)
    try:
        if workers <= 1 or len(runs) == 1 or device.type != "cpu":
            return [train_and_test(trainset, data, model, model_options, cfg, seed, r, device, epochs, test, bar,
                                   preprocess, learned_lr) for r in runs]
        workers = min(workers, len(runs))
        threads = max(1, (os.cpu_count() or 1) // workers)
        context = torch.multiprocessing.get_context("spawn")
        results = {}
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(train_and_test, trainset, data, model, model_options, cfg, seed, r, device,
                                   epochs, test, None, preprocess, learned_lr): r for r in runs}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(epochs)
        return [results[r] for r in runs]
    finally:
        bar.close()


def evaluate_training_set(trainset, data: LoadedDataset, model: str, model_options: dict, cfg: EvalConfig,
                          seed: int, device: torch.device, repeats: int | None = None,
                          epochs: int | None = None, test: bool = True, quiet: bool = True,
                          runs: list[int] | None = None, workers: int = 1,
                          preprocess: torch.nn.Module | None = None,
                          learned_lr: float | None = None) -> dict[str, Any]:
    """Mean and std over `repeats` fresh networks (or the run indices in `runs`) trained on `trainset`:
    'test_mean' at the checkpoints chosen on validation (absent without a validation split) and
    'test_last_mean' after the last epoch; 'protocol' names the recipe's protocol and what departs from it."""
    repeats = cfg.repeats if repeats is None else repeats
    epochs = cfg.epochs if epochs is None else epochs
    if repeats < 1 or epochs < 1:
        raise DreamddError("evaluation needs at least one repeat and one epoch")
    runs = list(range(repeats)) if runs is None else runs
    results = run_repeats(trainset, data, model, model_options, cfg, seed, device, runs, epochs, test, quiet,
                          workers, preprocess, learned_lr)
    val_mean, val_std = mean_std([r["val_acc"] for r in results])
    recipe = asdict(cfg) | {"epochs": epochs, "repeats": len(results)}
    summary: dict[str, Any] = {"model": model, "model_options": model_options, "repeats": len(results),
                               "epochs": epochs, "val_mean": val_mean, "val_std": val_std, "runs": results,
                               "val_size": len(data.val), "train_size": len(trainset),
                               "protocol": describe(recipe, protocol_eval(cfg.protocol, data.info.name)), "recipe": recipe,
                               "checkpoint": "chosen on validation, and last epoch" if len(data.val)
                               else "last epoch (no validation split)"}
    if test:
        summary["test_last_mean"], summary["test_last_std"] = mean_std([r["test_acc_last"] for r in results])
        if len(data.val):
            summary["test_mean"], summary["test_std"] = mean_std([r["test_acc"] for r in results])
    return summary


def evaluate_images(images: torch.Tensor, labels: torch.Tensor, data: LoadedDataset, model: str,
                    model_options: dict, cfg: EvalConfig, seed: int, device: torch.device, **options) -> dict:
    """Evaluate images with pixels in [0, 1] (a decoded distilled set or a coreset); see evaluate_training_set."""
    if tuple(images.shape[1:]) != (data.info.channels, *data.info.image_size):
        raise DreamddError(f"images of shape {tuple(images.shape[1:])} do not fit dataset {data.info.name} "
                           f"({data.info.channels}x{data.info.image_size[0]}x{data.info.image_size[1]})")
    trainset = TensorTrainingSet(images, labels, data.info, device)
    return evaluate_training_set(trainset, data, model, model_options, cfg, seed, device, **options)

