"""The library half of benchmarks/: what the benchmark scripts share, typed and tested, so that each script only
parses its arguments, calls this, prints and writes its results.

- runs: reuse-or-resume (distill_or_continue: a finished run is read, a stopped one continued, else started),
  the snapshots of a run, and each snapshot's evaluation cached beside it (evaluate_snapshot);
- curves over seeds: periodic validation curves, their mean over the iterations every seed evaluated, smoothed
  mean and std of snapshot accuracies, iterations (and seconds) to reach a target, snapshots picked by wall time;
- work: tasks run in parallel processes of one thread each, what a result file records about the machine;
- the benchmark network (ConvNet-3, instance norm) and its chunked embedding with optional bf16 / channels_last,
  and IDC's network update on real images;
- dispatch counts: ATen operations and host syncs (scalar reads, value-shaped operations) of a distillation.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from .io import names
from .io.rundir import sha256_file
from .runs import load_run

Records = list[dict[str, Any]]


# ---- runs ----------------------------------------------------------------------------------------------------
def distill_or_continue(out: str | os.PathLike, quiet: bool = True, evaluate: bool = False,
                        **settings: Any) -> dict[str, Any]:
    """The run's summary: a finished run in `out` is read, an interrupted one continued from its checkpoint, else
    it is distilled with `settings` (dreamdd.distill's arguments); `evaluate`: the final evaluation too."""
    from . import api
    out = Path(out)
    summary = load_run(out).summary if (out / names.SUMMARY).exists() else None
    if summary and summary.get("status") == "finished":
        return summary
    if (out / names.CHECKPOINT).exists():
        return api.distill(resume=out, evaluate=evaluate, quiet=quiet).summary
    return api.distill(out=out, evaluate=evaluate, quiet=quiet, **settings).summary


def snapshots(run: str | os.PathLike, wanted: set[int] | None = None) -> dict[int, Path]:
    """The run's snapshot folders by outer iteration (only the iterations in `wanted`, when given)."""
    folder = Path(run) / names.SNAPSHOTS
    found = {names.snapshot_iteration(s.name): s for s in folder.iterdir() if s.is_dir()} if folder.is_dir() else {}
    return {it: found[it] for it in sorted(found) if wanted is None or it in wanted}


def snapshot_elapsed(snapshot: str | os.PathLike) -> float:
    """The loop's wall seconds when the snapshot was saved (its metadata)."""
    return float(json.loads((Path(snapshot) / names.METADATA).read_text())["elapsed_seconds"])


def evaluate_snapshot(snapshot: str | os.PathLike, repeats: int, epochs: int | None,
                      precision: str = "fp32", compile: bool = False) -> dict[str, Any]:
    """Test accuracy (checkpoint chosen on validation) of one snapshot, or of a finished run's artifact, with its
    networks trained in `precision`, their forwards compiled with `compile`; cached beside it."""
    from . import api
    snapshot = Path(snapshot)
    suffix = ("" if precision == "fp32" else f"-{precision}") + ("-compiled" if compile else "")
    cache = snapshot / f"eval-r{repeats}-e{epochs or 'recipe'}{suffix}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    meta = json.loads((snapshot / names.METADATA).read_text())
    started = time.perf_counter()
    result = api.evaluate(str(snapshot), repeats=repeats, epochs=epochs, precision=precision, compile=compile)
    record = {"iteration": meta["iterations"], "elapsed_seconds": meta["elapsed_seconds"],
              "test_mean": result["test_mean"], "test_std": result["test_std"], "val_mean": result["val_mean"],
              "epochs": result["epochs"], "repeats": result["repeats"], "precision": result["precision"],
              "compile": compile, "eval_seconds": time.perf_counter() - started}
    cache.write_text(json.dumps(record, indent=1) + "\n")
    return record


def evaluate_snapshots(snapshots: list[str], repeats: int, epochs: int | None, jobs: int) -> list[dict[str, Any]]:
    """evaluate_snapshot of each, in `jobs` processes, with identical sets (the same tensors, e.g. two arms'
    common initial set) evaluated once; each record keeps its own snapshot's iteration and elapsed seconds."""
    digest = {path: sha256_file(Path(path) / names.TENSORS) for path in snapshots}
    first = {}
    for path in snapshots:
        first.setdefault(digest[path], path)
    done = dict(zip(first, run_all([(evaluate_snapshot, path, repeats, epochs) for path in first.values()], jobs)))
    records = []
    for path in snapshots:
        meta = json.loads((Path(path) / names.METADATA).read_text())
        records.append({**done[digest[path]], "iteration": meta["iterations"],
                        "elapsed_seconds": meta.get("elapsed_seconds", 0.0)})
    return records


def periodic_curve(run: str | os.PathLike) -> dict[int, float]:
    """Outer iteration -> validation accuracy of the run's periodic evaluations (one protocol at every point; the
    final evaluation trains more networks for longer, so it is left out)."""
    return {int(e["iteration"]): float(e["val_mean"]) for e in load_run(run).points("val_mean")}


# ---- curves over seeds ---------------------------------------------------------------------------------------
def mean_curve(curves: list[dict[int, float]]) -> list[tuple[int, float]]:
    """The seeds' mean accuracy at every iteration that all of them evaluated."""
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return [(it, statistics.fmean(c[it] for c in curves)) for it in common]


def smoothed(values: list[float], window: int) -> list[float]:
    """Centred moving average over `window` neighbouring points (truncated at both ends)."""
    half = window // 2
    return [statistics.fmean(values[max(0, i - half): i + half + 1]) for i in range(len(values))]


def arm_curve(records: list[Records], window: int) -> dict[str, list[float]]:
    """Per iteration that every seed evaluated: mean and std over seeds of test accuracy, the smoothed mean,
    and the mean elapsed wall seconds."""
    common = sorted(set.intersection(*({r["iteration"] for r in seed} for seed in records)))
    by_seed = [{r["iteration"]: r for r in seed} for seed in records]
    mean = [statistics.fmean(s[it]["test_mean"] for s in by_seed) for it in common]
    std = [statistics.pstdev([s[it]["test_mean"] for s in by_seed]) if len(by_seed) > 1 else 0.0 for it in common]
    seconds = [statistics.fmean(s[it]["elapsed_seconds"] for s in by_seed) for it in common]
    return {"iterations": common, "mean": mean, "std": std, "smoothed": smoothed(mean, window),
            "elapsed_seconds": seconds,
            "per_seed": [[s[it]["test_mean"] for it in common] for s in by_seed]}


def first_reach(curve: dict[str, list[float]], target: float) -> tuple[int | None, float | None]:
    """(iteration, elapsed seconds) of the first smoothed point >= target, or (None, None)."""
    for it, acc, sec in zip(curve["iterations"], curve["smoothed"], curve["elapsed_seconds"]):
        if acc >= target:
            return it, sec
    return None, None


def ratio(baseline: float | None, arm: float | None) -> float | None:
    """baseline / arm; None when either is missing or the arm needed nothing (reached it at iteration 0)."""
    return baseline / arm if baseline and arm else None


def summarize(curves: dict[str, dict[str, list[float]]], baseline: str = "random") -> dict[str, Any]:
    """Target = the baseline arm's final smoothed accuracy; each arm's iterations and seconds to reach it, and the
    ratios against the baseline's own first reach and against its whole horizon."""
    base = curves[baseline]
    target = base["smoothed"][-1]
    base_it, base_sec = first_reach(base, target)
    horizon_it, horizon_sec = base["iterations"][-1], base["elapsed_seconds"][-1]
    out = {"target": target, "random_first_reach": base_it, "random_horizon": horizon_it, "arms": {}}
    for arm, curve in curves.items():
        it, sec = first_reach(curve, target)
        out["arms"][arm] = {
            "final_mean": curve["mean"][-1], "final_std": curve["std"][-1], "final_smoothed": curve["smoothed"][-1],
            "iterations_to_target": it, "seconds_to_target": sec, "reached_by_initial_set": it == 0,
            "ratio_vs_random_reach": ratio(base_it, it), "ratio_vs_random_horizon": ratio(horizon_it, it),
            "time_ratio_vs_random_reach": ratio(base_sec, sec), "time_ratio_vs_random_horizon": ratio(horizon_sec, sec)}
    return out


def pick_snapshots(elapsed: dict[int, float], every_seconds: float) -> list[int]:
    """Iterations to evaluate from {iteration: loop wall seconds}: the first, the first at or after every multiple
    of `every_seconds`, and the last."""
    order = sorted(elapsed)
    picked = {order[0], order[-1]}
    mark = every_seconds
    for it in order:
        if elapsed[it] >= mark:
            picked.add(it)
            mark = (math.floor(elapsed[it] / every_seconds) + 1) * every_seconds
    return sorted(picked)


# ---- work ----------------------------------------------------------------------------------------------------
def _one_thread(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def run_all(tasks: list[tuple[Callable[..., Any], ...]], jobs: int) -> list[Any]:
    """Run (function, *args) tasks, in `jobs` spawned processes of one thread each when jobs > 1."""
    if jobs <= 1:
        return [fn(*args) for fn, *args in tasks]
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_one_thread,
                             initargs=(1,)) as pool:
        return [f.result() for f in [pool.submit(fn, *args) for fn, *args in tasks]]


def write_result(out: str | os.PathLike, result: dict[str, Any]) -> Path:
    """A benchmark's JSON result written to `out` (its folder made), with the machine it came from; the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "machine": machine()}, indent=1) + "\n")
    return out


def machine() -> dict[str, Any]:
    """What a result file records about the machine it came from."""
    import torch
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


# ---- the benchmark network -----------------------------------------------------------------------------------
def convnet(num_classes: int = 10, channels: int = 3, size: int = 32, width: int = 128, depth: int = 3,
            seed: int = 0):
    """ConvNet-3 (instance norm, average pooling) as DREAM clusters with, seeded."""
    import torch

    from .models import create_model
    torch.manual_seed(seed)
    return create_model("convnet", num_classes=num_classes, channels=channels, image_size=(size, size),
                        width=width, depth=depth, norm="instance", pooling="avg")


def embed(net, images_fn, indices, chunk: int, memory_format=None, dtype=None):
    """Embedding in inference mode and eval mode, in chunks; optional channels_last input and bf16 autocast."""
    import torch
    memory_format = torch.contiguous_format if memory_format is None else memory_format
    net.eval()
    with torch.inference_mode():
        parts = []
        for s in range(0, indices.numel(), chunk):
            x = images_fn(indices[s:s + chunk]).contiguous(memory_format=memory_format)
            if dtype is None:
                parts.append(net.embed(x).flatten(1).float())
            else:
                with torch.autocast("cpu", dtype=dtype):
                    parts.append(net.embed(x).flatten(1).float())
    net.train()
    return torch.cat(parts)


def train_real(net, data, n_images: int, seed: int = 0) -> None:
    """IDC's network update on n_images random real images (batch 128, color_crop + CutMix), as between rounds."""
    import torch

    from .augment import SiameseAugment
    from .training import sgd, train_step
    g = torch.Generator().manual_seed(seed)
    opt = sgd(net, 0.01, 0.9, 5e-4)
    aug = SiameseAugment("color_crop")
    seen = 0
    while seen < n_images:
        idx = data.train.sample(min(128, n_images - seen), g)
        train_step(net, opt, data.info.normalize(data.train.batch(idx, "cpu")), data.train.labels[idx],
                   data.info.num_classes, g, aug, 0.5)
        seen += len(idx)


def load_cifar(root: str):
    """CIFAR-10 from `root` with the default split (never downloaded by a benchmark)."""
    from .data import load
    return load("cifar10", root=root, val_size=0.1, seed=0, download=False)


# ---- dispatch counts -----------------------------------------------------------------------------------------
# Operations that hand a value to the host (.item(), float(t), bool(t), torch.equal) and those whose output shape
# depends on the values (nonzero, masked_select, unique): on a GPU each waits for the device. The mode sees the
# outermost operation only (what runs inside one is below it), so item and _local_scalar_dense both count.
SCALAR_READS = ("item", "_local_scalar_dense", "is_nonzero", "equal")
VALUE_SHAPED = ("nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_consecutive", "unique_dim")


def dispatch_counter():
    """A TorchDispatchMode that counts, inside its block, every ATen operation (on a GPU each is a kernel launch),
    the scalar reads and the value-shaped operations among them (SCALAR_READS, VALUE_SHAPED: on a GPU each is a
    host sync), and each operation by name."""
    import sys
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    package = str(Path(__file__).resolve().parent)

    def place() -> str:
        """The innermost dreamdd function on the stack (module:function), where a sync is asked for."""
        frame = sys._getframe(2)
        while frame is not None and not frame.f_code.co_filename.startswith(package):
            frame = frame.f_back
        if frame is None:
            return "outside dreamdd"
        return f"{Path(frame.f_code.co_filename).stem}:{frame.f_code.co_name}"

    class DispatchCounter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.scalar_reads, self.value_shaped = 0, 0, 0
            self.by_op, self.syncs_by_place = Counter(), Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            self.ops += 1
            self.by_op[name] += 1
            self.scalar_reads += name in SCALAR_READS
            self.value_shaped += name in VALUE_SHAPED
            if name in SCALAR_READS or name in VALUE_SHAPED:
                self.syncs_by_place[place()] += 1
            return func(*args, **(kwargs or {}))

    return DispatchCounter()


def dispatch_counts(dataset: str = "digits", ipc: int = 2, iterations: int = 2,
                    overrides: dict[str, Any] | None = None, top: int = 15, init: bool = True) -> dict[str, Any]:
    """ATen operations and host syncs of a distillation (no run folder, no evaluation) on the CPU, for the whole
    run and per inner iteration amortized over it: selection included, and the initialisation unless `init` is
    False (then the loop alone)."""
    import torch

    from .config import deep_update, resolve
    from .data import load_configured
    from .engine.distiller import Distiller
    fixed = {"distill": {"iterations": iterations, "eval_every": 0, "snapshot_every": 0}}
    config = resolve(dataset, ipc, None, deep_update(overrides or {}, fixed))
    data = load_configured(config)
    distiller = Distiller(config, data, torch.device("cpu"))
    initial = None if init else distiller.initial_set().images.detach()
    with dispatch_counter() as counter:
        distiller.run(final_eval=False, initial=initial)
    inner = distiller.timings.inner_iterations
    return {"dataset": dataset, "ipc": ipc, "method": config.match.method, "selector": config.select.selector,
            "init": config.synth.init, "init_counted": init, "classes": data.info.num_classes, "outer_iterations": iterations,
            "inner_iterations": inner, "ops": counter.ops, "scalar_reads": counter.scalar_reads,
            "value_shaped": counter.value_shaped, "ops_per_inner": counter.ops / inner,
            "scalar_reads_per_inner": counter.scalar_reads / inner,
            "syncs_per_inner": (counter.scalar_reads + counter.value_shaped) / inner,
            "reads_by_op": {name: counter.by_op[name] for name in SCALAR_READS + VALUE_SHAPED if counter.by_op[name]},
            "syncs_by_place": dict(counter.syncs_by_place.most_common(top)),
            "top_ops": dict(counter.by_op.most_common(top))}
