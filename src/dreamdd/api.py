"""The Python API, mirroring the command line: distill(), evaluate(), load_distilled()."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from . import data as datasets
from . import compilation, determinism
from .artifact import Distilled, artifact_problem, load_distilled, save_distilled
from .config import (OWN_DATA_PRESET, Config, deep_update, dump_yaml, fingerprint, model_options, resolve,
                     validate)
from .devices import resolve_device
from .precision import resolve as resolve_precision
from .distributed import SINGLE, World, current_world
from .engine.distiller import Distiller
from .budget import parse_duration, plan_budget
from .coreset import feature_network, select_coreset
from .errors import DreamddError
from .evaluation import BankTrainingSet, Evaluator, evaluation_network, resolve_recipe
from .methods import learned_eval_settings
from .plots import save_grid
from .io.names import BUDGET, CONFIG, GRID, REQUEST, TENSORS
from .io.run import RunSession
from .io.rundir import write_json, write_text
from .sources import check_fits, is_class_folder, load_source
from .engine.timing import Timings



@dataclass
class RunResult:
    """What distill() produced: the run folder, the distilled set and the summary written beside it."""
    path: Path
    distilled: Distilled
    summary: dict[str, Any]


load_data = datasets.load_configured   # the dataset a config names, with its validation split


RESUME_ACCEPTS = "--iterations, --device, --no-eval, --tensorboard and --quiet"


def distill(dataset: str | None = None, ipc: int | None = None, *, preset: str | None = None,
            selector: str | None = None, init: str | None = None, method: str | None = None,
            iterations: int | None = None, image_size: int | None = None,
            out: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
            seed: int | None = None, device: str | None = None, precision: str | None = None,
            deterministic: bool | None = None, compile: bool | None = None, data_root: str | None = None,
            resume: str | os.PathLike | None = None, evaluate: bool | None = None,
            tensorboard: bool = False, budget: str | float | None = None, quiet: bool = True) -> RunResult:
    """Distill a dataset into a run folder (or continue the run in `resume`) and return the result.

    Settings are resolved as: defaults <- preset (default: `<dataset>-ipc<N>` or `<dataset>`) <- the named
    arguments <- `overrides` (a nested mapping like {"select": {"interval": 5}}). `evaluate` (default: yes, or
    for a resumed run what it was started with) runs the final evaluation. A resumed run keeps its settings and
    accepts only a new total of `iterations`, `device`, `evaluate`, `tensorboard` and `quiet`. With `budget` (a
    duration such as "30m"), the horizon and the image learning rate are planned for that wall time
    (dreamdd.budget). `precision` (fp32, bf16, auto: dreamdd.precision) is resolved here, so config.yaml names
    the one the run uses. `deterministic` runs under deterministic algorithms (dreamdd.determinism), for identical
    bytes on CUDA too; `compile` compiles the networks' plain forwards (dreamdd.compilation).
    """
    world = current_world()
    if not world.is_main:
        return _follow(world)
    with _leading(world) as lead:
        if resume is not None and budget is not None:
            raise DreamddError("--budget plans a new run; a resumed run keeps the plan in its config.yaml")
        if budget is not None and world.distributed:
            raise DreamddError("--budget plans a run on one process's clock and is not planned under torchrun: "
                               "give --iterations instead, or start the --budget run in one process and continue "
                               "it under torchrun with --resume")
        budget_seconds = parse_duration(budget) if budget is not None else None
        if resume is not None:
            session = RunSession.resume("distill", resume, RESUME_ACCEPTS, dict(
                dataset=dataset, ipc=ipc, preset=preset, selector=selector, init=init, method=method, out=out,
                overrides=overrides, seed=seed, precision=precision, deterministic=deterministic,
                compile=compile, data_root=data_root), quiet=quiet)
        else:
            session, config = _new_session(dataset, ipc, preset, dict(
                method=method, selector=selector, init=init, iterations=iterations, data_root=data_root,
                image_size=image_size, seed=seed, device=device, precision=precision,
                deterministic=deterministic, compile=compile), overrides, out, quiet)
        with session:
            reuse = False
            if resume is not None:
                config, state, evaluate, reuse = _resume(session, iterations, device, evaluate)
            else:
                state, evaluate = None, evaluate is not False
            session.begin({"command": "distill", "evaluate": evaluate}, dump_yaml(config))
            if resume is None and preset is None and config.preset == OWN_DATA_PRESET:
                session.log(f"no preset is made for dataset {config.data.dataset!r}: preset {OWN_DATA_PRESET} "
                            f"applies (sized for a CPU: {config.distill.iterations} x {config.distill.inner_loop} "
                            "iterations, evaluation without flip; see `dreamdd presets`); name another with --preset")
            return _distill_in(session, config, state, evaluate, reuse, tensorboard, budget_seconds, lead)


def _new_session(dataset: str | None, ipc: int | None, preset: str | None, named_values: dict[str, Any],
                 overrides: dict[str, Any] | None, out, quiet: bool) -> tuple[RunSession, Config]:
    """A new distill run's settings (defaults <- preset <- named arguments <- overrides) and its run folder."""
    if dataset is None:
        raise DreamddError("no dataset given; name one (e.g. digits, mnist, cifar10) or a folder / .npz path")
    named: dict[str, Any] = {}
    for section, key, value in (("match", "method", "method"), ("select", "selector", "selector"),
                                ("synth", "init", "init"), ("distill", "iterations", "iterations"),
                                ("data", "root", "data_root"), ("data", "image_size", "image_size")):
        if named_values[value] is not None:
            named.setdefault(section, {})[key] = named_values[value]
    for key in ("seed", "device", "precision", "deterministic", "compile"):
        if named_values[key] is not None:
            named[key] = named_values[key]
    config = resolved_precision(resolve(dataset, ipc, preset, deep_update(named, overrides or {})))
    name = (f"{Path(config.data.dataset).stem}-ipc{config.synth.ipc}-{config.match.method}-"
            f"{config.select.selector}-s{config.seed}")
    return RunSession.create("distill", out, name, quiet=quiet), config


class _Lead:
    """Rank 0's side of a distill under torchrun: it tells the other ranks what to run, once, or why not."""

    def __init__(self, world: World):
        self.world, self.sent = world, False

    def send(self, plan: dict[str, Any]) -> None:
        self.sent = True
        self.world.broadcast(plan)


@contextmanager
def _leading(world: World) -> Iterator[_Lead]:
    """Rank 0 prepares the run; if it stops before telling the other ranks what to run, they are told why, so
    that every rank ends with the same one message instead of waiting on a collective."""
    lead = _Lead(world)
    try:
        yield lead
    except BaseException as error:
        if world.distributed and not lead.sent:
            lead.send({"error": str(error) or type(error).__name__})
        raise


def _follow(world: World) -> RunResult:
    """A rank other than 0 under torchrun: run the loop for its classes as rank 0 planned it; write nothing."""
    plan = world.broadcast()
    if "error" in plan:
        error = DreamddError(plan["error"])
        error.said_by_rank_0 = True      # the command line leaves it to rank 0 to print
        raise error
    config, path = plan["config"], Path(plan["path"])
    if plan["reuse"]:
        return RunResult(path, None, {"rank": world.rank})
    torch_device = world.device(resolve_device(config.device))
    data = load_data(config, quiet=True)
    with run_modes(config.deterministic, config.compile, torch_device):
        distilled = Distiller(config, data, torch_device, None, True, world=world).run(
            resume=plan["state"], final_eval=plan["evaluate"])
    return RunResult(path, distilled, {"rank": world.rank})


@contextmanager
def run_modes(deterministic: bool, compiled: bool, device: str | torch.device) -> Iterator[None]:
    """A run's process-wide modes: deterministic algorithms (dreamdd.determinism) and compiled forwards
    (dreamdd.compilation, checked to be available on `device`, a device or a configured name, first)."""
    if compiled:
        compilation.check(resolve_device(device) if isinstance(device, str) else device)
    with determinism.mode(deterministic), compilation.mode(compiled):
        yield


def resolved_precision(config: Config) -> Config:
    """`config` with its precision resolved for its device (auto: bf16 where the hardware runs it natively)."""
    config.precision = resolve_precision(config.precision, resolve_device(config.device))
    return config


def _distill_in(session: RunSession, config: Config, state: dict[str, Any] | None, evaluate: bool, reuse: bool,
                tensorboard: bool, budget_seconds: float | None = None, lead: _Lead | None = None) -> RunResult:
    """Distill in a locked run folder from `state` (None: from the start); with `reuse`, the artifact there is
    already the run's result and only grid.png and summary.json are left to write; with `budget_seconds`, a new
    run is first planned for that wall time (budget.json); under torchrun `lead` tells the other ranks the plan."""
    run, log, quiet = session.run, session.log, session.quiet
    world = lead.world if lead is not None else SINGLE
    if tensorboard:
        run.enable_tensorboard()
    with session.attempt(), run_modes(config.deterministic, config.compile, config.device):
        torch_device = world.device(resolve_device(config.device))
        data = load_data(config, quiet=quiet)
        log(f"data: {data.info.name} from {data.source}: {len(data.train)} train / {data.val_size} validation / "
            f"{len(data.test)} test images")
        initial = None
        if budget_seconds is not None:
            config, plan, initial = plan_budget(config, data, torch_device, budget_seconds, log, quiet)
            write_json(run.file(BUDGET), plan)
            write_text(run.file(CONFIG), dump_yaml(config))
        distiller = Distiller(config, data, torch_device, run, quiet, log=log, world=world)
        if world.distributed:    # sent once rank 0 found the data and the settings sound, so errors are said once
            lead.send({"config": config, "state": state, "evaluate": evaluate, "reuse": reuse, "path": str(run.path)})
            log(f"torchrun: {world.size} processes, classes dealt round-robin (rank r learns classes r, r + "
                f"{world.size}, ...); rank 0 writes this folder")
        if reuse:
            distilled = load_distilled(run.path)
            distiller.timings = Timings.restored(state["timings"] if state else {})
        else:
            distilled = distiller.run(resume=state, final_eval=evaluate, initial=initial)
            save_distilled(run.path, distilled)
        save_grid(run.file(GRID), distilled.images, distilled.labels, data.info.class_names,
                  title=f"{data.info.name}, IPC {config.synth.ipc}, {config.select.selector}")
        summary = session.finish({"run": str(run.path), "dataset": data.info.name, "preset": config.preset,
                   "ipc": config.synth.ipc, "factor": config.synth.factor, "method": config.match.method,
                   "selector": config.select.selector, "init": config.synth.init, "seed": config.seed,
                   "iterations": distilled.metadata["iterations"], "device": str(torch_device),
                   "precision": config.precision, "deterministic": config.deterministic,
                   "compile": config.compile, "processes": world.size,
                   "val_size": data.val_size, "wall_seconds": session.elapsed(),
                   "timings": distiller.timings.as_dict(), "artifact": str(run.file(TENSORS)),
                   "evaluation": _brief(distilled.metadata.get("evaluation")),
                   "loop_gain": loop_gain(run.events("eval"))})
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
                                   "test_std", "test_last_mean", "test_last_std", "val_size", "checkpoint", "precision")
            if k in result}


def _resume(session: RunSession, iterations: int | None, device: str | None,
            evaluate: bool | None) -> tuple[Config, dict[str, Any] | None, bool, bool]:
    """Check that the run in `run` can continue to `iterations` (default: its own) and say how: its settings,
    the checkpoint (None: restart from the beginning), whether to evaluate, and whether its artifact is already
    the result. Everything is checked before anything is written."""
    run = session.run
    config = session.config()
    if evaluate is None:
        evaluate = bool(session.request().get("evaluate", True))
    state = run.load_checkpoint(fingerprint(config))
    completed = int(state["completed"]) if state is not None else 0
    target = config.distill.iterations if iterations is None else int(iterations)
    if target < completed:
        raise DreamddError(f"{run.path} has completed {completed} outer iterations, more than --iterations "
                           f"{target}, and a run does not go back: omit --iterations, or pass {completed} or more "
                           "(an earlier state of a run needs distill.snapshot_every)")
    reuse = False
    if state is not None and completed == target and run.file(TENSORS).exists():
        try:
            reuse = int(load_distilled(run.path).metadata.get("iterations", -1)) == completed
        except DreamddError:
            reuse = False   # a damaged or half-written artifact: it is made again from the checkpoint
        if reuse and session.status() == "finished" and run.file(GRID).exists():
            raise DreamddError(f"{run.path} already finished {completed} iterations; pass --iterations N with a "
                               f"larger N to continue it")
    config.distill.iterations = target
    if device is not None:
        config.device = device
    validate(config)
    if not reuse:
        run.truncate_events(lambda e: e.get("iteration", 0) <= completed and not e.get("final"))
    return config, state, evaluate, reuse


def _prepare(source, dataset: str | None, mean, std, factor, data_root: str | None, overrides,
             protocol: str | None = None):
    """Load the set (any source), its dataset splits and the evaluation recipe."""
    data = None
    if isinstance(source, Distilled):
        distilled = source
    else:
        class_names = None
        if dataset is not None and is_class_folder(source):   # folder names are the dataset's class names
            data = datasets.load(dataset, root=data_root or "data")
            class_names = data.info.class_names
        distilled = load_source(source, dataset, class_names, mean=mean, std=std, factor=factor)
    meta = distilled.metadata
    split = dict(meta.get("split", {}))
    if dataset is not None:
        split["dataset"] = dataset
    if "dataset" not in split:
        raise DreamddError("the artifact does not say which dataset it was distilled from; pass --dataset NAME")
    if data is None:
        data = datasets.load(split["dataset"], root=data_root or split.get("root", "data"),
                             val_size=split.get("val_size", 0.1), seed=split.get("seed", 0),
                             image_size=(meta.get("dataset") or {}).get("image_size"))
    check_fits(distilled, data.info)
    stored = meta.get("recipe") or (meta.get("evaluation") or {}).get("recipe", {})   # the run's, else its result's
    recipe = resolve_recipe(stored, split["dataset"], overrides, protocol)
    return distilled, data, recipe


def evaluate_models(source: str | os.PathLike | Distilled, models: Sequence[str | None], *,
                    repeats: int | None = None, epochs: int | None = None, dataset: str | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    factor: int | None = None, data_root: str | None = None, device: str = "auto",
                    seed: int = 0, workers: int = 1, overrides: dict[str, Any] | None = None,
                    protocol: str | None = None, precision: str = "fp32", deterministic: bool = False,
                    compile: bool = False, quiet: bool = True) -> list[dict[str, Any]]:
    """Evaluate one distilled set on several architectures with the same recipe; one summary per model.
    The recipe is the set's own (its distillation's protocol) unless `protocol` names another (idc, dc, dsa,
    dm, mtt: dreamdd.protocols); the networks train in `precision` (fp32, bf16, auto), recorded in the result,
    under deterministic algorithms with `deterministic` (dreamdd.determinism), and with compiled forwards with
    `compile` (dreamdd.compilation)."""
    distilled, data, recipe = _prepare(source, dataset, mean, std, factor, data_root, overrides, protocol)
    images, labels = distilled.decoded()
    # what the set's method learned that its evaluation must use (MTT: its learned lr and ZCA whitening)
    learned_lr, preprocess = learned_eval_settings(distilled.metadata.get("method"), distilled.extra)
    world = current_world()
    evaluator = Evaluator(data, recipe, world.device(resolve_device(device)), seed, learned_lr=learned_lr,
                          preprocess=preprocess, workers=workers, quiet=quiet or not world.is_main, world=world,
                          precision=precision)
    distilled_with = distilled.metadata.get("model", {"name": "convnet"})
    with run_modes(deterministic, compile, evaluator.device):
        results = [evaluator.with_model(*evaluation_network(distilled_with, recipe, model))
                   .evaluate(images, labels, repeats=repeats, epochs=epochs) for model in models]
    for result in results:
        result["deterministic"], result["compile"] = deterministic, compile
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
                           precision: str = "fp32", deterministic: bool = False, compile: bool = False,
                           quiet: bool = True) -> dict[str, Any]:
    """The upper bound: the same recipe on the whole training split (less the validation split)."""
    data = datasets.load(dataset, root=data_root or "data", val_size=val_size, seed=seed)
    recipe = resolve_recipe({}, dataset, overrides, protocol)
    world = current_world()
    torch_device = world.device(resolve_device(device))
    evaluator = Evaluator(data, recipe, torch_device, seed, model or recipe.model or "convnet", workers=workers,
                          quiet=quiet or not world.is_main, world=world, precision=precision)
    with run_modes(deterministic, compile, torch_device):
        return evaluator.evaluate_training_set(BankTrainingSet(data.train, data.info, torch_device),
                                               repeats=repeats, epochs=epochs)


SELECT_RESUME_ACCEPTS = "--device and --quiet"


def select(dataset: str | None = None, per_class: int | None = None, method: str | None = None, *,
           out: str | os.PathLike | None = None, feature_epochs: int | None = None, seed: int | None = None,
           data_root: str | None = None, device: str | None = None, precision: str | None = None,
           deterministic: bool | None = None, compile: bool | None = None, evaluate: bool | None = None,
           overrides: dict[str, Any] | None = None,
           resume: str | os.PathLike | None = None, quiet: bool = True) -> RunResult:
    """A coreset baseline: `per_class` real images per class chosen by `method` (default random), written as an
    artifact (like distill) and evaluated with the dataset's recipe. `resume` finishes a stopped select run
    (its choice is deterministic, so it is made again) and accepts only `device` and `quiet`."""
    if resume is not None:
        session = RunSession.resume("select", resume, SELECT_RESUME_ACCEPTS, dict(
            dataset=dataset, per_class=per_class, method=method, out=out, feature_epochs=feature_epochs, seed=seed,
            data_root=data_root, precision=precision, deterministic=deterministic, compile=compile,
            no_eval=None if evaluate is None else not evaluate,
            overrides=overrides),
            quiet=quiet)
        with session:
            config = session.config()
            if session.status() == "finished" and artifact_problem(session.path) is None:
                raise DreamddError(f"{session.path} is a finished select run; nothing to resume")
            if device is not None:
                config.device = device
            return _select_in(session, config)
    if dataset is None or per_class is None:
        raise DreamddError("select needs a dataset and the images per class (--dataset, --per-class), or --resume")
    seed = 0 if seed is None else seed
    named: dict[str, Any] = {"seed": seed, "device": device or "auto", **({"precision": precision} if precision else {}),
                             **({"deterministic": deterministic} if deterministic is not None else {}),
                             **({"compile": compile} if compile is not None else {})}
    if data_root is not None:
        named["data"] = {"root": data_root}
    config = resolved_precision(resolve(dataset, per_class, None, deep_update(named, overrides or {})))
    config.synth.factor = 1
    method = method or "random"
    request = {"command": "select", "per_class": per_class, "method": method,
               "feature_epochs": 2 if feature_epochs is None else feature_epochs, "evaluate": evaluate is not False}
    session = RunSession.create("select", out, f"{Path(config.data.dataset).stem}-coreset-{method}-{per_class}-s{seed}",
                                quiet=quiet)
    with session:
        used = config.to_dict()   # what a coreset uses: the data, the feature network (model, distill.net_*), eval
        used["distill"] = {k: v for k, v in used["distill"].items() if k.startswith("net_") or k == "cutmix_prob"}
        session.begin(request, yaml.safe_dump({k: used[k] for k in ("data", "model", "distill", "eval", "seed",
                                                                    "device", "precision", "deterministic", "compile",
                                                                    "preset")},
                                                      sort_keys=False))
        return _select_in(session, config)


def _select_in(session: RunSession, config: Config) -> RunResult:
    """Choose the coreset a locked select run folder asks for and write its artifact, grid and summary."""
    request = session.request()
    run, log, quiet = session.run, session.log, session.quiet
    try:
        per_class, method = int(request["per_class"]), str(request["method"])
        feature_epochs, evaluate = int(request["feature_epochs"]), bool(request["evaluate"])
    except (KeyError, TypeError, ValueError):
        raise DreamddError(f"{run.file(REQUEST)} is damaged; start a new select run") from None
    seed = config.seed
    with session.attempt(), run_modes(config.deterministic, config.compile, config.device):
        torch_device = resolve_device(config.device)
        data = load_data(config, quiet=quiet)
        net = None if method == "random" else feature_network(config, data, torch_device, feature_epochs, quiet)
        indices = select_coreset(data, method, per_class, net, seed, torch_device)
        images = data.train.uint8(indices).float() / 255
        labels = data.train.labels[indices]
        metadata = {"dataset": data.info.to_dict(), "ipc": per_class, "factor": 1, "method": f"coreset-{method}",
                    "selector": method, "init": None, "seed": seed, "feature_epochs": feature_epochs,
                    "model": {"name": config.model.name, **model_options(config)}, "val_size": data.val_size,
                    "train_indices": indices.tolist(),
                    "split": {"dataset": datasets.dataset_reference(config.data.dataset, config.data.root),
                              "root": str(Path(config.data.root).expanduser().absolute()),
                              "val_size": config.data.val_size, "seed": seed}}
        distilled = Distilled(images, labels, metadata)
        if evaluate:
            evaluator = Evaluator.for_config(config, data, torch_device, quiet=quiet)
            distilled.metadata["evaluation"] = evaluator.evaluate(images, labels)
        save_distilled(run.path, distilled)
        save_grid(run.file(GRID), images, labels, data.info.class_names,
                  title=f"{data.info.name}, {per_class} per class, coreset {method}")
        summary = session.finish({"run": str(run.path), "dataset": data.info.name,
                                  "method": f"coreset-{method}", "ipc": per_class, "seed": seed,
                                  "wall_seconds": session.elapsed(), "artifact": str(run.file(TENSORS)),
                                  "evaluation": _brief(distilled.metadata.get("evaluation"))})
    log(f"coreset {method}: {per_class} per class; results in {run.path}")
    return RunResult(run.path, distilled, summary)


__all__ = ["distill", "evaluate", "evaluate_models", "evaluate_whole_dataset", "select", "load_distilled", "RunResult"]
