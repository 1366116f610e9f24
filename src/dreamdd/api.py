"""The Python API, mirroring the command line: distill(), evaluate(), load_distilled()."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import data as datasets
from .artifact import METADATA, TENSORS, Distilled, load_distilled, save_distilled
from .config import Config, EvalConfig, dump_yaml, merge, resolve, validate
from .devices import resolve_device
from .distiller import Distiller
from .errors import DreamddError
from .evaluation import evaluate_images
from .report import save_grid
from .rundir import CONFIG, LOG, SUMMARY, RunDir, write_json, write_text


@dataclass
class RunResult:
    """What distill() produced: the run folder, the distilled set and the summary written beside it."""
    path: Path
    distilled: Distilled
    summary: dict[str, Any]


def load_data(config: Config) -> datasets.LoadedDataset:
    d = config.data
    return datasets.load(d.dataset, root=d.root, val_size=d.val_size, seed=config.seed, download=d.download,
                         verify=d.verify)


def _logger(run: RunDir, quiet: bool):
    def log(message: str) -> None:
        with open(run.file(LOG), "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        if not quiet:
            tqdm.write(message, file=sys.stderr)
    return log


def distill(dataset: str | None = None, ipc: int | None = None, *, preset: str | None = None,
            selector: str | None = None, init: str | None = None, iterations: int | None = None,
            out: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
            seed: int | None = None, device: str | None = None, data_root: str | None = None,
            resume: str | os.PathLike | None = None, evaluate: bool = True, quiet: bool = True) -> RunResult:
    """Distill a dataset into a run folder (or continue the run in `resume`) and return the result.

    Settings are resolved as: defaults <- preset (default: `<dataset>-ipc<N>` or `<dataset>`) <- the named
    arguments <- `overrides` (a nested mapping like {"select": {"interval": 5}}).
    """
    if resume is not None:
        run, config, state = _resume(Path(resume), iterations)
    else:
        if dataset is None:
            raise DreamddError("no dataset given; name one (e.g. digits, mnist, cifar10) or a folder / .npz path")
        named: dict[str, Any] = {}
        for section, key, value in (("select", "selector", selector), ("synth", "init", init),
                                    ("distill", "iterations", iterations), ("data", "root", data_root)):
            if value is not None:
                named.setdefault(section, {})[key] = value
        for key, value in (("seed", seed), ("device", device)):
            if value is not None:
                named[key] = value
        config = resolve(dataset, ipc, preset, named)
        if overrides:
            merge(config, overrides, origin="overrides")
            validate(config)
        name = (f"{Path(config.data.dataset).stem}-ipc{config.synth.ipc}-{config.match.method}-"
                f"{config.select.selector}-s{config.seed}")
        run = RunDir.create(out, name)
        write_text(run.file(CONFIG), dump_yaml(config))
        state = None
    log = _logger(run, quiet)
    started = time.time()
    write_json(run.file(SUMMARY), {"status": "running", "started": started})
    try:
        torch_device = resolve_device(config.device)
        data = load_data(config)
        log(f"data: {data.info.name} from {data.source}: {len(data.train)} train / {data.val_size} validation / "
            f"{len(data.test)} test images")
        distiller = Distiller(config, data, torch_device, run, quiet, log=log)
        distilled = distiller.run(resume=state, final_eval=evaluate)
        distilled.metadata["split"] = {"dataset": config.data.dataset, "root": config.data.root,
                                       "val_size": config.data.val_size, "seed": config.seed}
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
               "iterations": config.distill.iterations, "device": str(torch_device),
               "val_size": data.val_size, "wall_seconds": time.time() - started,
               "timings": distiller.timings.as_dict(), "artifact": str(run.file(TENSORS)),
               "evaluation": _brief(distilled.metadata.get("evaluation"))}
    write_json(run.file(SUMMARY), summary)
    log(f"results in {run.path}")
    return RunResult(run.path, distilled, summary)


def _brief(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {k: result[k] for k in ("model", "repeats", "epochs", "val_mean", "val_std", "test_mean", "test_std",
                                   "val_size") if k in result}


def _resume(path: Path, iterations: int | None) -> tuple[RunDir, Config, dict[str, Any]]:
    run = RunDir(path)
    if not run.file(CONFIG).exists():
        raise DreamddError(f"{path} is not a dreamdd run folder (no {CONFIG}); give the folder a distill run wrote")
    import yaml
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


def evaluate(source: str | os.PathLike | Distilled, *, model: str | None = None, repeats: int | None = None,
             epochs: int | None = None, data_root: str | None = None, device: str = "auto", seed: int = 0,
             quiet: bool = True) -> dict[str, Any]:
    """Evaluate a distilled set with fresh networks, the recipe of its run unless told otherwise."""
    distilled = source if isinstance(source, Distilled) else load_distilled(source)
    meta = distilled.metadata
    split = meta.get("split", {})
    if "dataset" not in split:
        raise DreamddError("the artifact does not say which dataset it was distilled from (metadata 'split')")
    stored = (meta.get("evaluation") or {}).get("recipe", {})
    config = Config()
    merge(config, {"eval": {k: v for k, v in stored.items() if k in EvalConfig.__dataclass_fields__}},
          origin="artifact recipe")
    recipe = config.eval
    model_meta = dict(meta.get("model", {"name": "convnet"}))
    distill_model = model_meta.pop("name")
    name = model or recipe.model or distill_model
    options = model_meta if name == distill_model else {}
    data = datasets.load(split["dataset"], root=data_root or split.get("root", "data"), val_size=split.get("val_size", 0.1),
                         seed=split.get("seed", 0))
    images, labels = distilled.decoded()
    return evaluate_images(images, labels, data, name, options, recipe, seed, resolve_device(device),
                           repeats=repeats, epochs=epochs, quiet=quiet)


__all__ = ["distill", "evaluate", "load_distilled", "RunResult"]
