"""The evaluation protocol: fresh networks trained on a (decoded) synthetic set, checkpoint chosen on the
validation split, the test split touched once per network for the final number."""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import EvalConfig
from .data import ClassBank, LoadedDataset
from .errors import DreamddError
from .seeding import generator
from .training import accuracy, build_network, make_augment, sgd, train_step


def split_accuracy(net: torch.nn.Module, data: LoadedDataset, bank: ClassBank, device: torch.device) -> float:
    return accuracy(net, lambda idx: data.info.normalize(bank.batch(idx, device)), bank.labels)


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def train_and_test(images: torch.Tensor, labels: torch.Tensor, data: LoadedDataset, model: str,
                   model_options: dict, cfg: EvalConfig, seed: int, run_index: int, device: torch.device,
                   epochs: int, test: bool = True, progress: tqdm | None = None) -> dict[str, Any]:
    """Train one fresh network on normalized `images`; keep the best validation checkpoint; test it once."""
    info = data.info
    net = build_network(model, info.num_classes, info.channels, info.image_size, model_options,
                        seed, "eval", model, run_index, device=device)
    optimizer = sgd(net, cfg.lr, cfg.momentum, cfg.weight_decay)
    milestones = sorted({max(1, epochs * 2 // 3), max(1, epochs * 5 // 6)})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
    augment = make_augment(cfg.augment)
    g = generator(seed, "eval-batches", model, run_index)
    n = images.shape[0]
    has_val = len(data.val) > 0
    best_val, best_epoch, best_state = -1.0, epochs, None
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=g).to(images.device)
        for start in range(0, n, cfg.batch):
            idx = order[start:start + cfg.batch]
            loss = train_step(net, optimizer, images[idx], labels[idx], info.num_classes, g, augment,
                              cfg.cutmix_prob, cfg.cutmix_beta)
            if not math.isfinite(loss):
                raise DreamddError(f"evaluation loss became {loss} at epoch {epoch}; the synthetic images may "
                                   "hold extreme values, or lower eval.lr")
        scheduler.step()
        if has_val and (epoch % cfg.val_every == 0 or epoch == epochs):
            val = split_accuracy(net, data, data.val, device)
            if val >= best_val:   # ties go to the later (longer-trained) checkpoint
                best_val, best_epoch, best_state = val, epoch, copy.deepcopy(net.state_dict())
        if progress is not None:
            progress.update(1)
    if best_state is not None:
        net.load_state_dict(best_state)
    result = {"run": run_index, "val_acc": best_val if has_val else float("nan"), "epoch": best_epoch,
              "seconds": time.perf_counter() - started}
    if test:
        result["test_acc"] = split_accuracy(net, data, data.test, device)
    return result


def evaluate_images(images: torch.Tensor, labels: torch.Tensor, data: LoadedDataset, model: str,
                    model_options: dict, cfg: EvalConfig, seed: int, device: torch.device,
                    repeats: int | None = None, epochs: int | None = None, test: bool = True,
                    quiet: bool = True, runs: list[int] | None = None) -> dict[str, Any]:
    """Evaluate decoded images in [0, 1] with `repeats` fresh networks (or the run indices in `runs`)."""
    repeats = cfg.repeats if repeats is None else repeats
    epochs = cfg.epochs if epochs is None else epochs
    if repeats < 1 or epochs < 1:
        raise DreamddError("evaluation needs at least one repeat and one epoch")
    if images.shape[1:] != (data.info.channels, *data.info.image_size):
        raise DreamddError(f"images of shape {tuple(images.shape[1:])} do not fit dataset {data.info.name} "
                           f"({data.info.channels}x{data.info.image_size[0]}x{data.info.image_size[1]})")
    runs = list(range(repeats)) if runs is None else runs
    normalized = data.info.normalize(images.to(device).float())
    labels = labels.to(device)
    bar = tqdm(total=len(runs) * epochs, desc=f"evaluate {model}", unit="epoch", disable=quiet, leave=False)
    results = [train_and_test(normalized, labels, data, model, model_options, cfg, seed, r, device, epochs,
                              test, bar) for r in runs]
    bar.close()
    val_mean, val_std = mean_std([r["val_acc"] for r in results])
    summary: dict[str, Any] = {"model": model, "model_options": model_options, "repeats": len(results),
                               "epochs": epochs, "val_mean": val_mean, "val_std": val_std, "runs": results,
                               "val_size": len(data.val), "recipe": asdict(cfg) | {"epochs": epochs,
                                                                                     "repeats": len(results)}}
    if test:
        summary["test_mean"], summary["test_std"] = mean_std([r["test_acc"] for r in results])
    return summary
