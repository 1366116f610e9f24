"""The GPU check: run it whenever a CUDA device is at hand, and record what it prints in BENCHMARKS.md with the device.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--dataset digits] [--ipc 2] [--iterations 2] \
        [--set key=value ...]                                  # -> benchmarks/results/gpu-check-<device>.json

Over a fixed distillation (the dataset's preset at the given IPC, `--iterations` outer iterations, no evaluation,
the initial set built before the counted part):
- host syncs: torch.cuda.set_sync_debug_mode("warn") counts every synchronizing call of the loop, per inner
  iteration (CUDA only; on the CPU benchmarks/dispatch.py counts the scalar reads that would be syncs);
- kernels: torch.profiler over the same loop, the number of device kernels per inner iteration and the GPU-busy
  fraction (device kernel time over the loop's wall time); on the CPU, ATen operations per inner iteration;
- determinism: the same run twice with --deterministic (identical bytes expected) and twice without (the largest
  pixel difference, float rounding from atomics on CUDA, 0 on the CPU).
--device cpu runs the same checks on the CPU, where only the operation count and the determinism comparison
mean something; the test suite runs it that way.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _loop(dataset: str, ipc: int, iterations: int, overrides: dict, device: str):
    """A Distiller for the fixed run and its initial set (built outside the counted part)."""
    import torch

    from dreamdd.config import deep_update, resolve
    from dreamdd.data import load_configured
    from dreamdd.engine.distiller import Distiller
    fixed = {"distill": {"iterations": iterations, "eval_every": 0, "snapshot_every": 0}, "device": device}
    config = resolve(dataset, ipc, None, deep_update(overrides, fixed))
    distiller = Distiller(config, load_configured(config), torch.device(device))
    return distiller, distiller.initial_set().images.detach()


def count_syncs(dataset, ipc, iterations, overrides, device) -> dict:
    """Synchronizing calls of the loop, by torch.cuda.set_sync_debug_mode (CUDA only)."""
    import torch
    if not device.startswith("cuda"):
        return {"syncs": None, "why": "set_sync_debug_mode counts CUDA syncs only"}
    distiller, initial = _loop(dataset, ipc, iterations, overrides, device)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            distiller.run(final_eval=False, initial=initial)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    places: dict[str, int] = {}
    for w in syncs:
        key = f"{Path(w.filename).name}:{w.lineno}"
        places[key] = places.get(key, 0) + 1
    inner = distiller.timings.inner_iterations
    return {"syncs": len(syncs), "syncs_per_inner": len(syncs) / inner, "inner_iterations": inner,
            "syncs_by_place": dict(sorted(places.items(), key=lambda kv: -kv[1])[:15])}


def profile_kernels(dataset, ipc, iterations, overrides, device) -> dict:
    """Device kernels (CUDA) or ATen operations (CPU) per inner iteration, and the GPU-busy fraction."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    distiller, initial = _loop(dataset, ipc, iterations, overrides, device)
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        distiller.run(final_eval=False, initial=initial)
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - started
    inner = distiller.timings.inner_iterations
    events = prof.events()
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1e6       # microseconds -> seconds
        return {"kernels": len(kernels), "kernels_per_inner": len(kernels) / inner, "wall_seconds": wall,
                "device_busy_seconds": busy, "gpu_busy_fraction": busy / wall, "inner_iterations": inner}
    ops = [e for e in events if e.name.startswith("aten::")]
    return {"aten_ops": len(ops), "aten_ops_per_inner": len(ops) / inner, "wall_seconds": wall,
            "inner_iterations": inner}


def compare_runs(dataset, ipc, iterations, overrides, device) -> dict:
    """The same run twice with --deterministic and twice without: identical bytes, or the largest difference."""
    import torch

    import dreamdd
    from dreamdd.config import deep_update
    settings = deep_update(overrides, {"distill": {"iterations": iterations, "eval_every": 0, "snapshot_every": 0}})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for deterministic in (True, False):
            images = [dreamdd.distill(dataset, ipc, out=Path(tmp) / f"{deterministic}-{i}", device=device,
                                      deterministic=deterministic, overrides=settings, evaluate=False,
                                      quiet=True).distilled.images for i in range(2)]
            key = "deterministic" if deterministic else "default"
            out[key] = {"identical": bool(torch.equal(images[0], images[1])),
                        "max_pixel_difference": float((images[0] - images[1]).abs().max())}
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from dreamdd.config import parse_overrides
    from dreamdd.experiments import machine
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--ipc", type=int, default=2)
    p.add_argument("--iterations", type=int, default=2, help="outer iterations of each run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="result file (default: results/gpu-check-<device>.json)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to check (--device cpu runs the CPU side)", file=sys.stderr)
        return 2
    overrides = parse_overrides(args.overrides)
    run = (args.dataset, args.ipc, args.iterations, overrides, args.device)
    result = {"device": args.device, "device_name": torch.cuda.get_device_name(args.device)
              if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "dataset": args.dataset, "ipc": args.ipc,
              "iterations": args.iterations, "settings": args.overrides,
              "syncs": count_syncs(*run), "profile": profile_kernels(*run), "repeat": compare_runs(*run),
              "machine": machine()}
    print(json.dumps({k: result[k] for k in ("device_name", "syncs", "profile", "repeat")}, indent=1))
    out = Path(args.out) if args.out else HERE / "results" / f"gpu-check-{args.device.replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
