"""`dreamdd distill --budget 30m`: fit a run into a wall-time budget on this machine, with an image learning rate
chosen to move the set within it.

The papers' image rates are made for thousands of GPU outer iterations; over the tens a CPU budget allows they
leave the set close to its initialisation. The plan, recorded in budget.json, config.yaml and the log:

1. Selection: DREAM's k-means runs on a random pool of BUDGET_POOL images of each class (select.pool_size)
   unless the settings give a pool: a whole class (5,000 CIFAR-10 images) costs minutes of a budget per selection
   round before and inside the loop, and a pool of 1,000 chooses batches as close to their class (BENCHMARKS.md,
   "selection"). The plan says so.
2. Time: under --compile, a warm-up of one inner step and one evaluation epoch compiles first (its seconds are
   spent from the budget, and recorded), so that compiling is not timed as the pace of the loop.
   Then one probe outer iteration (at most PROBE_STEPS inner steps) from the initial set measures the seconds
   of an inner step (matching and network update, the loop's own stopwatch) and of one DREAM selection round,
   which recurs every select.interval steps and at the start of each outer iteration. The learning-rate probes
   below run the loop's own outer iterations, and the horizon is re-timed from them.
3. Horizon: the loop gets what is left of the budget after the probes, in outer iterations of the preset's
   length; only when not even one of them fits is it shortened to fit. The deadline (distill.max_minutes) ends
   the loop, inside an outer iteration if need be (engine.callbacks.TimeBudget), so the plan allows one outer
   iteration more than the measured pace fits: a machine that runs faster than during the probes uses its time
   rather than leaving it. Evaluation comes on top of the budget, and the log says so.
4. Image lr: the preset's rate times each of LR_FACTORS, each distilled from the same initial set for a probe of
   equal length (CALIBRATION_SHARE of the budget, split among them) and scored on the validation split by one
   short evaluation; the initial set is scored the same way. The best wins (ties: the smaller rate). The test
   split is never touched. A probe shorter than MIN_PROBE_STEPS inner steps cannot tell the rates apart (on
   CIFAR-10 at the paper's settings, probes of 1 step scored 41.1-42.0 in no order), so when the budget cannot
   hold that much the probes are skipped and the rate is UNCALIBRATED_MULTIPLE times the preset's. With
   distill.budget_calibrate false the preset's rate is kept (the same horizon otherwise): the papers' rate under
   the same budget.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from typing import Any, Callable

import torch

from . import compilation
from .config import Config
from .data import LoadedDataset
from .engine.distiller import Distiller
from .errors import DreamddError
from .evaluation import Evaluator
from .methods import dc_loops
from .registry import METHODS
from .synthetic import SyntheticSet
from .engine.timing import Timings

LR_FACTORS = (1.0, 3.0, 10.0, 30.0)
CALIBRATION_SHARE = 0.25       # of the budget, for the learning-rate probes
PROBE_STEPS = 3                # inner steps of the timing probe
PROBE_EVAL_EPOCHS = 50         # epochs of the one network that scores a probe on the validation split
MIN_PROBE_STEPS = 10           # fewer inner steps cannot tell the rates apart: their scores differ by noise
BUDGET_POOL = 1000             # images per class that DREAM's k-means clusters under a budget (select.pool_size)
UNCALIBRATED_MULTIPLE = 10.0   # the rate multiple when the budget cannot hold the probes: what moved CIFAR-10 IPC
                               # 10 within two hours (preset cifar10-cpu-2h, BENCHMARKS.md "budget")
# the setting that holds a method's inner steps per outer iteration (methods not listed take one fixed step
# count: DM one step, MTT mtt.syn_steps)
INNER_STEPS = {"idc": ("distill", "inner_loop"), "dreamplus": ("distill", "inner_loop"),
               "dc": ("dc", "outer_loop"), "dsa": ("dc", "outer_loop")}


def parse_duration(text: str) -> float:
    """'30m', '2h', '90s', '1h30m' or a number of minutes -> seconds."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text) * 60
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
        if not parts or re.sub(r"\s|(\d+(?:\.\d+)?)\s*[hms]", "", text):
            raise DreamddError(f"--budget {text!r}: give a duration such as 30m, 2h, 90s or 1h30m")
        seconds = sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)
    if seconds <= 0:
        raise DreamddError("--budget must be a positive duration")
    return seconds


def _configured_steps(config: Config) -> int | None:
    """The inner steps of one of the preset's outer iterations, for methods that have such a setting (DC's
    outer_loop left empty follows its rule by IPC)."""
    if config.match.method not in INNER_STEPS:
        return None
    section, key = INNER_STEPS[config.match.method]
    value = getattr(getattr(config, section), key)
    return value if value is not None else dc_loops(config.synth.ipc)[0]


def _with_steps(config: Config, steps: int | None) -> Config:
    """A copy of config whose outer iterations take `steps` inner steps (where the method has such a setting)."""
    config = copy.deepcopy(config)
    if steps is not None and config.match.method in INNER_STEPS:
        section, key = INNER_STEPS[config.match.method]
        setattr(getattr(config, section), key, steps)
    return config


def _selection_pool(config: Config, data: LoadedDataset) -> tuple[Config, str | None]:
    """config with DREAM's k-means on a pool of BUDGET_POOL images per class, where DREAM selects or initialises
    from classes larger than that and the settings give no pool; and why (None: unchanged)."""
    dream = config.select.selector == "dream" or config.synth.init == "representative"
    largest = max(data.train.class_counts())
    if not dream or config.select.pool_size is not None or largest <= BUDGET_POOL:
        return config, None
    config = copy.deepcopy(config)
    config.select.pool_size = BUDGET_POOL
    return config, (f"select.pool_size {BUDGET_POOL}: DREAM clusters a random pool of {BUDGET_POOL} images of each "
                    f"class instead of the whole class (up to {largest} images), as cheap selection within a budget")


def _probe_config(config: Config, iterations: int, steps: int | None, lr: float | None) -> Config:
    probe = _with_steps(config, steps)
    probe.distill.iterations = iterations
    probe.distill.eval_every = probe.distill.snapshot_every = 0
    probe.distill.max_minutes = None
    if lr is not None:
        probe.synth.lr = lr
    return probe


def _score(config: Config, data: LoadedDataset, device: torch.device, images: torch.Tensor, factor: int,
           preprocess, learned_lr, epochs: int = PROBE_EVAL_EPOCHS) -> float:
    """Validation accuracy of a set (one network trained `epochs` epochs); never the test split."""
    decoded, labels = SyntheticSet(images, data.info.num_classes, factor).decoded()
    evaluator = Evaluator.for_config(config, data, device, learned_lr=learned_lr, preprocess=preprocess)
    evaluator.recipe = dataclasses.replace(config.eval, val_every=epochs)
    result = evaluator.evaluate(decoded, labels, repeats=1, epochs=epochs, test=False)
    return float(result["val_mean"])


def _compile_warmup(config: Config, data: LoadedDataset, device: torch.device, initial: torch.Tensor) -> float:
    """Under --compile: one inner step and one evaluation epoch from `initial`, so that the graphs the probes and
    the loop use are compiled before anything is timed; its seconds."""
    t0 = time.perf_counter()
    warm = Distiller(_probe_config(config, 1, 1, None), data, device, quiet=True)
    warm.run(initial=initial.clone(), final_eval=False)
    _score(config, data, device, initial, config.synth.factor, warm.method.eval_preprocess(), warm.method.eval_lr(),
           epochs=1)
    return time.perf_counter() - t0


def _step_costs(config: Config, t: Timings, num_classes: int) -> tuple[float, float]:
    """From a probe's timings: seconds of an inner step without DREAM's selection rounds, and seconds of one
    selection round (every class re-clustered; 0 for selectors that choose per step)."""
    steps = max(1, t.inner_iterations)
    rounds = t.extra.get("selections", 0) / num_classes if config.select.selector == "dream" else 0
    if not rounds:
        return (t.select + t.match + t.network) / steps, 0.0
    return (t.match + t.network) / steps, t.select / rounds


def _outer_seconds(config: Config, per_step: float, per_round: float, steps: int) -> float:
    """Seconds of an outer iteration of `steps` inner steps. DREAM re-clusters every select.interval steps, and
    afresh at each outer iteration for the methods that say so (Method.reselects_every_iteration)."""
    interval = config.select.interval
    fresh = METHODS.get(config.match.method).reselects_every_iteration
    rounds = math.ceil(steps / interval) if fresh else steps / interval
    return per_step * steps + per_round * rounds


def _affordable_steps(config: Config, per_step: float, per_round: float, seconds: float, most: int) -> int:
    """The most inner steps (at most `most`, at least 1) that one outer iteration can take within `seconds`."""
    steps = most
    while steps > 1 and _outer_seconds(config, per_step, per_round, steps) > seconds:
        steps -= 1
    return steps


def _probe_length(config: Config, per_step: float, per_round: float, seconds: float,
                  full_steps: int) -> tuple[int, int, int]:
    """(inner steps per outer iteration, outer iterations, total inner steps) of one probe within `seconds`."""
    if config.match.method in INNER_STEPS:
        steps = _affordable_steps(config, per_step, per_round, seconds, full_steps)
        fits = _outer_seconds(config, per_step, per_round, steps) <= seconds
        iterations = max(1, int(seconds // _outer_seconds(config, per_step, per_round, steps))) if fits else 0
        return steps, iterations, steps * iterations
    iterations = max(0, int(seconds // _outer_seconds(config, per_step, per_round, full_steps)))
    return full_steps, iterations, iterations


def plan_budget(config: Config, data: LoadedDataset, device: torch.device, seconds: float,
                log: Callable[[str], None], quiet: bool = True) -> tuple[Config, dict[str, Any], torch.Tensor]:
    """The config for a run of `seconds` of loop time (horizon and image lr chosen as the module says), the plan
    that explains it, and the initial set the probes started from (the run starts from it too, instead of
    building it again)."""
    if not len(data.val):
        raise DreamddError("--budget scores its learning-rate probes on the validation split; keep "
                           "data.val_size above 0")
    started = time.perf_counter()
    config, pool = _selection_pool(config, data)
    if pool:
        log(f"budget: {pool}")
    configured = _configured_steps(config)
    timing_steps = min(configured, PROBE_STEPS) if configured is not None else None
    timing = Distiller(_probe_config(config, 1, timing_steps, None), data, device, quiet=True)
    full_steps = configured if configured is not None else timing.method.steps_per_iteration()
    initial = timing.initial_set().images.detach().clone()
    warmup = _compile_warmup(config, data, device, initial) if compilation.enabled() else None
    if warmup is not None:
        log(f"budget: compiled the networks' forwards before timing ({warmup:.0f} s of the budget)")
    timing.run(initial=initial, final_eval=False)
    per_step, per_round = _step_costs(config, timing.timings, data.info.num_classes)
    base_lr = timing.image_lr
    factor = config.synth.factor
    per_candidate = CALIBRATION_SHARE * seconds / len(LR_FACTORS)

    reason = None
    if not config.distill.budget_calibrate:
        reason = "distill.budget_calibrate is false"
    elif _probe_length(config, per_step, per_round, per_candidate, full_steps)[2] < MIN_PROBE_STEPS:
        reason = f"a probe could not take {MIN_PROBE_STEPS} inner steps within its share of the budget"
    probe = None
    if reason is None:
        t0 = time.perf_counter()
        initial_score = _score(config, data, device, initial, factor, timing.method.eval_preprocess(),
                               timing.method.eval_lr())
        eval_seconds = time.perf_counter() - t0
        probe_steps, probe_iterations, total = _probe_length(config, per_step, per_round,
                                                             per_candidate - eval_seconds, full_steps)
        if total < MIN_PROBE_STEPS:
            reason = (f"a probe could not take {MIN_PROBE_STEPS} inner steps within its share of the budget "
                      f"once scored ({eval_seconds:.0f} s a score)")
        else:
            probe = _calibrate(config, data, device, initial, base_lr, probe_steps, probe_iterations, log)
            probe["initial_val_mean"] = initial_score
            per_step, per_round = probe.pop("costs")          # re-timed from the probes' own inner steps
    if probe is not None:
        lr, choice = probe["best"]["lr"], "validation probes"
    else:
        multiple = 1.0 if not config.distill.budget_calibrate else UNCALIBRATED_MULTIPLE
        lr, choice = base_lr * multiple, f"x{multiple:g}: {reason}"
    planned, plan = _planned(config, seconds, started, full_steps, per_step, per_round, base_lr, lr, choice, probe, log)
    plan["selection_pool"] = pool
    plan["compile_warmup_seconds"] = warmup
    return planned, plan, initial


def _calibrate(config: Config, data: LoadedDataset, device: torch.device, initial: torch.Tensor, base_lr: float,
               steps: int, iterations: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Distill from `initial` at each candidate rate for the same probe length and score each on validation."""
    inner = config.match.method in INNER_STEPS
    candidates, costs = [], []
    for multiple in LR_FACTORS:
        lr = base_lr * multiple
        probe = Distiller(_probe_config(config, iterations, steps if inner else None, lr), data, device, quiet=True)
        try:
            images = probe.run(initial=initial, final_eval=False).images
            costs.append(_step_costs(config, probe.timings, data.info.num_classes))
            score = _score(config, data, device, images, config.synth.factor, probe.method.eval_preprocess(),
                           probe.method.eval_lr())
        except DreamddError as error:        # a rate so large the loss diverges: out of the running
            score = float("nan")
            log(f"budget: image lr {lr:.3g} diverged in its probe ({error})")
        candidates.append({"lr": lr, "multiple": multiple, "val_mean": score})
    finite = [c for c in candidates if not math.isnan(c["val_mean"])]
    if not finite:
        raise DreamddError("every image lr of the budget's probes diverged; set synth.lr by hand")
    best = max(finite, key=lambda c: (c["val_mean"], -c["lr"]))
    costs_mean = (sum(c[0] for c in costs) / len(costs), sum(c[1] for c in costs) / len(costs))
    return {"inner_steps": steps, "iterations": iterations, "eval_epochs": PROBE_EVAL_EPOCHS, "split": "validation",
            "candidates": candidates, "best": best, "costs": costs_mean}


def _planned(config: Config, seconds: float, started: float, full_steps: int, per_step: float, per_round: float,
             base_lr: float, lr: float, choice: str, probe: dict[str, Any] | None,
             log: Callable[[str], None]) -> tuple[Config, dict[str, Any]]:
    """The config and plan for the loop: what is left of the budget after the probes, in outer iterations of the
    preset's length (shortened only when not even one fits what is left), at image lr `lr`."""
    inner = config.match.method in INNER_STEPS
    spent = time.perf_counter() - started
    loop_seconds = max(0.0, seconds - spent)
    steps = _affordable_steps(config, per_step, per_round, loop_seconds, full_steps) if inner else full_steps
    outer_seconds = _outer_seconds(config, per_step, per_round, steps)
    iterations = int(loop_seconds // outer_seconds) + 1     # one more than fits at the measured pace: the deadline
                                                            # (max_minutes) ends the loop
    planned = _with_steps(config, steps if inner else None)
    planned.synth.lr = lr
    planned.distill.iterations = iterations
    planned.distill.max_minutes = loop_seconds / 60
    planned.distill.budget_minutes = seconds / 60
    plan = {"budget_seconds": seconds, "probe_seconds": spent, "loop_seconds": loop_seconds,
            "seconds_per_inner_step": per_step, "seconds_per_selection_round": per_round, "inner_steps": steps,
            "seconds_per_outer_iteration": outer_seconds, "iterations": iterations, "paper_lr": base_lr, "lr": lr,
            "lr_choice": choice, "probe": probe, "evaluation": "on top of the budget"}
    if probe:
        chosen = (f"image lr {lr:.3g} = {probe['best']['multiple']:g} x the preset's {base_lr:.3g}, chosen on the "
                  f"validation split after probes of {probe['inner_steps'] * probe['iterations']} inner steps "
                  f"(initial set {probe['initial_val_mean']:.2f}; "
                  + ", ".join(f"x{c['multiple']:g}: {c['val_mean']:.2f}" for c in probe["candidates"]) + ")")
    else:
        chosen = f"image lr {lr:.3g} = {choice} (the preset's is {base_lr:.3g}; no probes)"
    log(f"budget {seconds / 60:.1f} min: probes took {spent / 60:.1f} min; the loop gets {loop_seconds / 60:.1f} "
        f"min = {loop_seconds / outer_seconds:.1f} outer iterations of {steps} inner steps ({outer_seconds:.1f} s "
        f"each, measured), at most {iterations}, ended by the deadline; "
        f"{chosen}; the final evaluation comes on top of the budget")
    return planned, plan
