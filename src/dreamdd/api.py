"""The Python API, mirroring the command line: distill(), evaluate(), load_distilled()."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml
from tqdm.auto import tqdm

from . import data as datasets
from .artifact import METADATA, TENSORS, Distilled, learned_eval_settings, load_distilled, save_distilled
from .config import (OWN_DATA_PRESET, Config, EvalConfig, deep_update, default_preset, dump_yaml, load_preset,
                     merge, protocol_eval, resolve, validate)
from .devices import resolve_device
from .distiller import Distiller, model_options
from .budget import parse_duration, plan_budget
from .coreset import feature_network, select_coreset
from .errors import DreamddError
from .evaluation import BankTrainingSet, evaluate_images, evaluate_training_set
from .plots import save_grid
from .rundir import CONFIG, LOG, SUMMARY, RunDir, write_json, write_text

BUDGET = "budget.json"   # the --budget plan: probes, measured times, the chosen horizon and image lr
from .sources import load_source


@dataclass
class RunResult:
    """What distill() produced: the run folder, the distilled set and the summary written beside it."""
    path: Path
    distilled: Distilled
    summary: dict[str, Any]


load_data = datasets.load_configured   # the dataset a config names, with its validation split


def _logger(run: RunDir, quiet: bool):
    def log(message: str) -> None:
        with open(run.file(LOG), "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        if not quiet:
            tqdm.write(message, file=sys.stderr)
    return log


def distill(dataset: str | None = None, ipc: int | None = None, *, preset: str | None = None,
            selector: str | None = None, init: str | None = None, method: str | None = None,
            iterations: int | None = None, image_size: int | None = None,
            out: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
            seed: int | None = None, device: str | None = None, data_root: str | None = None,
            resume: str | os.PathLike | None = None, evaluate: bool = True, tensorboard: bool = False,
            budget: str | float | None = None, quiet: bool = True) -> RunResult:
    """Distill a dataset into a run folder (or continue the run in `resume`) and return the result.

    Settings are resolved as: defaults <- preset (default: `<dataset>-ipc<N>` or `<dataset>`) <- the named
    arguments <- `overrides` (a nested mapping like {"select": {"interval": 5}}). With `budget` (a duration such
    as "30m"), the horizon and the image learning rate are planned for that wall time (dreamdd.budget).
    """
    if resume is not None and budget is not None:
        raise DreamddError("--budget plans a new run; a resumed run keeps the plan in its config.yaml")
    budget_seconds = parse_duration(budget) if budget is not None else None
    if resume is not None:
        run, config, state = _resume(Path(resume), iterations)
    else:
        if dataset is None:
            raise DreamddError("no dataset given; name one (e.g. digits, mnist, cifar10) or a folder / .npz path")
        named: dict[str, Any] = {}
        for section, key, value in (("match", "method", method), ("select", "selector", selector),
                                    ("synth", "init", init),
                                    ("distill", "iterations", iterations), ("data", "root", data_root),
                                    ("data", "image_size", image_size)):
            if value is not None:
                named.setdefault(section, {})[key] = value
        for key, value in (("seed", seed), ("device", device)):
            if value is not None:
                named[key] = value
        config = resolve(dataset, ipc, preset, deep_update(named, overrides or {}))
        name = (f"{Path(config.data.dataset).stem}-ipc{config.synth.ipc}-{config.match.method}-"
                f"{config.select.selector}-s{config.seed}")
        run = RunDir.create(out, name)
        write_text(run.file(CONFIG), dump_yaml(config))
        state = None
    log = _logger(run, quiet)
    if resume is None and preset is None and config.preset == OWN_DATA_PRESET:
        log(f"no preset is made for dataset {config.data.dataset!r}: preset {OWN_DATA_PRESET} applies (sized for a "
            f"CPU: {config.distill.iterations} x {config.distill.inner_loop} iterations, evaluation without flip; "
            "see `dreamdd presets`); name another with --preset")
    if tensorboard:
        run.enable_tensorboard()
    started = time.time()
    write_json(run.file(SUMMARY), {"status": "running", "started": started})
    try:
        torch_device = resolve_device(config.device)
        data = load_data(config, quiet=quiet)
        log(f"data: {data.info.name} from {data.source}: {len(data.train)} train / {data.val_size} validation / "
            f"{len(data.test)} test images")
        if budget_seconds is not None:
            config, plan = plan_budget(config, data, torch_device, budget_seconds, log, quiet)
            write_json(run.file(BUDGET), plan)
            write_text(run.file(CONFIG), dump_yaml(config))
        distiller = Distiller(config, data, torch_device, run, quiet, log=log)
        distilled = distiller.run(resume=state, final_eval=evaluate)
        save_distilled(run.path, distilled)
        save_grid(run.file("grid.png"), distilled.images, distilled.labels, data.info.class_names,
                  title=f"{data.info.name}, IPC {config.synth.ipc}, {config.select.selector}")
    except BaseException as error:
        write_json(run.file(SUMMARY), {"status": "failed" if not isinstance(error, KeyboardInterrupt)
                                       else "interrupted", "error": str(error), "started": started,
                                       "resume_with": f"dreamdd distill --resume {run.path}"})
        raise
    summary = {"status": "finished", "run": str(run.path), "dataset": data.info.name, "preset": config.preset,
               "ipc": config.synth.ipc, "factor": config.synth.factor, "method": config.match.method,
               "selector": config.select.selector, "init": config.synth.init, "seed": config.seed,
               "iterations": distilled.metadata["iterations"], "device": str(torch_device),
               "val_size": data.val_size, "wall_seconds": time.time() - started,
               "timings": distiller.timings.as_dict(), "artifact": str(run.file(TENSORS)),
               "evaluation": _brief(distilled.metadata.get("evaluation")),
               "loop_gain": loop_gain(run.events("eval"))}
    write_json(run.file(SUMMARY), summary)
    log(f"results in {run.path}")
    return RunResult(run.path, distilled, summary)


def loop_gain(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the loop added over its initial set: validation accuracy at iteration 0 against the last periodic
    evaluation (the same protocol at both points), or None without both."""
    periodic = sorted((e for e in events if not e.get("final") and "val_mean" in e), key=lambda e: e["iteration"])
    if len(periodic) < 2 or periodic[0]["iteration"] != 0:
        return None
    first, last = periodic[0], periodic[-1]
    return {"initial_val_mean": first["val_mean"], "last_iteration": last["iteration"],
            "last_val_mean": last["val_mean"], "gain": last["val_mean"] - first["val_mean"],
            "protocol": last.get("protocol"), "repeats": last.get("repeats"), "epochs": last.get("epochs")}


def _brief(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {k: result[k] for k in ("model", "repeats", "epochs", "protocol", "val_mean", "val_std", "test_mean",
                                   "test_std", "test_last_mean", "test_last_std", "val_size", "checkpoint")
            if k in result}


def _resume(path: Path, iterations: int | None) -> tuple[RunDir, Config, dict[str, Any]]:
    run = RunDir(path)
    if not run.file(CONFIG).exists():
        raise DreamddError(f"{path} is not a dreamdd run folder (no {CONFIG}); give the folder a distill run wrote")
    config = Config.from_dict(yaml.safe_load(run.file(CONFIG).read_text()))
    state = run.load_checkpoint()
    if state is None:
        raise DreamddError(f"{path} has no checkpoint yet, so there is nothing to resume; start it again")
    if iterations is not None:
        config.distill.iterations = iterations
        write_text(run.file(CONFIG), dump_yaml(config))
    if state["completed"] >= config.distill.iterations and run.file(TENSORS).exists():
        raise DreamddError(f"{path} already finished {state['completed']} iterations; pass --iterations N "
                           "with a larger N to continue it")
    completed = int(state["completed"])
    run.truncate_events(lambda e: e.get("iteration", 0) <= completed and not e.get("final"))
    for name in (TENSORS, METADATA):   # an older artifact must not pass for this run's result
        run.file(name).unlink(missing_ok=True)
    return run, config, state


def _recipe(stored: dict[str, Any], dataset: str, overrides: dict[str, Any] | None,
            protocol: str | None = None) -> EvalConfig:
    """The evaluation recipe: the artifact's own, else the dataset's preset; then a named protocol's settings
    (for this dataset: config.protocol_eval), then `overrides` (eval section)."""
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


def _prepare(source, dataset: str | None, mean, std, factor, data_root: str | None, overrides,
             protocol: str | None = None):
    """Load the set (any source), its dataset splits and the evaluation recipe."""
    distilled = source if isinstance(source, Distilled) else load_source(source, dataset, mean=mean, std=std,
                                                                          factor=factor)
    meta = distilled.metadata
    split = dict(meta.get("split", {}))
    if dataset is not None:
        split["dataset"] = dataset
    if "dataset" not in split:
        raise DreamddError("the artifact does not say which dataset it was distilled from; pass --dataset NAME")
    data = datasets.load(split["dataset"], root=data_root or split.get("root", "data"),
                         val_size=split.get("val_size", 0.1), seed=split.get("seed", 0),
                         image_size=(meta.get("dataset") or {}).get("image_size"))
    stored = meta.get("recipe") or (meta.get("evaluation") or {}).get("recipe", {})   # the run's, else its result's
    recipe = _recipe(stored, split["dataset"], overrides, protocol)
    return distilled, data, recipe


def _model_for(meta: dict[str, Any], recipe: EvalConfig, model: str | None) -> tuple[str, dict[str, Any]]:
    """The evaluation network: asked for, else the recipe's, else the distillation model (with its options)."""
    model_meta = dict(meta.get("model", {"name": "convnet"}))
    distill_model = model_meta.pop("name")
    name = model or recipe.model or distill_model
    return name, (model_meta if name == distill_model else {})


def evaluate_models(source: str | os.PathLike | Distilled, models: Sequence[str | None], *,
                    repeats: int | None = None, epochs: int | None = None, dataset: str | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    factor: int | None = None, data_root: str | None = None, device: str = "auto",
                    seed: int = 0, workers: int = 1, overrides: dict[str, Any] | None = None,
                    protocol: str | None = None, quiet: bool = True) -> list[dict[str, Any]]:
    """Evaluate one distilled set on several architectures with the same recipe; one summary per model.
    The recipe is the set's own (its distillation's protocol) unless `protocol` names another (idc, dc, dsa,
    dm, mtt: dreamdd.protocols)."""
    distilled, data, recipe = _prepare(source, dataset, mean, std, factor, data_root, overrides, protocol)
    images, labels = distilled.decoded()
    torch_device = resolve_device(device)
    learned_lr, preprocess = learned_eval_settings(distilled)   # MTT: its learned lr and ZCA whitening
    results = []
    for model in models:
        name, options = _model_for(distilled.metadata, recipe, model)
        results.append(evaluate_images(images, labels, data, name, options, recipe, seed, torch_device,
                                       repeats=repeats, epochs=epochs, quiet=quiet, workers=workers,
                                       preprocess=preprocess, learned_lr=learned_lr))
    return results


def evaluate(source: str | os.PathLike | Distilled, *, model: str | None = None, **options) -> dict[str, Any]:
    """Evaluate a distilled set (a dreamdd artifact, a .pt / .npz of images and labels, or an image folder)
    with fresh networks: the recipe of its run (or of the dataset's preset) unless told otherwise.
    Options as evaluate_models()."""
    return evaluate_models(source, [model], **options)[0]


def evaluate_whole_dataset(dataset: str, *, model: str | None = None, repeats: int | None = None,
                           epochs: int | None = None, data_root: str | None = None, device: str = "auto",
                           seed: int = 0, val_size: float = 0.1, workers: int = 1,
                           overrides: dict[str, Any] | None = None, protocol: str | None = None,
                           quiet: bool = True) -> dict[str, Any]:
    """The upper bound: the same recipe on the whole training split (less the validation split)."""
    data = datasets.load(dataset, root=data_root or "data", val_size=val_size, seed=seed)
    recipe = _recipe({}, dataset, overrides, protocol)
    name = model or recipe.model or "convnet"
    torch_device = resolve_device(device)
    trainset = BankTrainingSet(data.train, data.info, torch_device)
    return evaluate_training_set(trainset, data, name, {}, recipe, seed, torch_device, repeats=repeats,
                                 epochs=epochs, quiet=quiet, workers=workers)


def select(dataset: str, per_class: int, method: str = "random", *, out: str | os.PathLike | None = None,
           feature_epochs: int = 2, seed: int = 0, data_root: str | None = None, device: str = "auto",
           evaluate: bool = True, overrides: dict[str, Any] | None = None, quiet: bool = True) -> RunResult:
    """A coreset baseline: `per_class` real images per class chosen by `method`, written as an artifact (like
    distill) and evaluated with the dataset's recipe."""
    named: dict[str, Any] = {"seed": seed, "device": device}
    if data_root is not None:
        named["data"] = {"root": data_root}
    config = resolve(dataset, per_class, None, deep_update(named, overrides or {}))
    config.synth.factor = 1
    run = RunDir.create(out, f"{Path(config.data.dataset).stem}-coreset-{method}-{per_class}-s{seed}")
    used = config.to_dict()   # what a coreset uses: the data, the feature network (model, distill.net_*), eval
    used["distill"] = {k: v for k, v in used["distill"].items() if k.startswith("net_") or k == "cutmix_prob"}
    write_text(run.file(CONFIG), yaml.safe_dump({k: used[k] for k in ("data", "model", "distill", "eval", "seed",
                                                                      "device", "preset")}, sort_keys=False))
    log = _logger(run, quiet)
    started = time.time()
    torch_device = resolve_device(config.device)
    data = load_data(config)
    net = None if method == "random" else feature_network(config, data, torch_device, feature_epochs, quiet)
    indices = select_coreset(data, method, per_class, net, seed, torch_device)
    images = data.train.uint8(indices).float() / 255
    labels = data.train.labels[indices]
    metadata = {"dataset": data.info.to_dict(), "ipc": per_class, "factor": 1, "method": f"coreset-{method}",
                "selector": method, "init": None, "seed": seed, "feature_epochs": feature_epochs,
                "model": {"name": config.model.name, **model_options(config)}, "val_size": data.val_size,
                "train_indices": indices.tolist(),
                "split": {"dataset": config.data.dataset, "root": config.data.root,
                          "val_size": config.data.val_size, "seed": seed}}
    distilled = Distilled(images, labels, metadata)
    if evaluate:
        name, options = _model_for(metadata, config.eval, None)
        distilled.metadata["evaluation"] = evaluate_images(images, labels, data, name, options, config.eval, seed,
                                                           torch_device, quiet=quiet)
    save_distilled(run.path, distilled)
    save_grid(run.file("grid.png"), images, labels, data.info.class_names,
              title=f"{data.info.name}, {per_class} per class, coreset {method}")
    summary = {"status": "finished", "run": str(run.path), "dataset": data.info.name, "method": f"coreset-{method}",
               "ipc": per_class, "seed": seed, "wall_seconds": time.time() - started,
               "artifact": str(run.file(TENSORS)), "evaluation": _brief(distilled.metadata.get("evaluation"))}
    write_json(run.file(SUMMARY), summary)
    log(f"coreset {method}: {per_class} per class; results in {run.path}")
    return RunResult(run.path, distilled, summary)


__all__ = ["distill", "evaluate", "evaluate_models", "evaluate_whole_dataset", "select", "load_distilled", "RunResult"]
