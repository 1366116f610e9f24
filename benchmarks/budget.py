"""Accuracy against wall time of one distillation under a time budget: the laptop preset's benchmark.

    .venv/bin/python benchmarks/budget.py --dataset cifar10 --ipc 10 --preset cifar10-cpu-2h --run runs/c10-2h \
        [--precision bf16] [--compile] [--eval-precision bf16] [--eval-compile] \
        [--every-minutes 20] [--curve-repeats 1] [--curve-epochs 300] [--final-repeats 2] [--jobs 2] \
        [--set key=value ...]

The run distills with all of the machine's threads and nothing else evaluated inside the budget (the preset's
distill.max_minutes stops it; distill.snapshot_every saves the set as it goes). Afterwards, with --jobs processes of
one thread each, it evaluates the snapshot at iteration 0, the first snapshot at or after every --every-minutes of
loop wall time, and the last one (--curve-repeats networks of --curve-epochs epochs each: a cheaper protocol, for the
shape of the curve), and the last snapshot once more under the preset's own protocol (--final-repeats networks of
eval.epochs epochs, the paper's evaluation): that number is the preset's result. Every network's checkpoint is
chosen on the validation split; the test split is only reported.

A finished run in --run is reused, an interrupted one continues from its checkpoint, and snapshot evaluations are
cached beside each snapshot, so the benchmark can be stopped and started again.
Writes benchmarks/results/budget-<preset>.json and .png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from dreamdd.config import parse_overrides
from dreamdd.experiments import (distill_or_continue, evaluate_snapshot, pick_snapshots, run_all,
                                 snapshot_elapsed, snapshots, write_result)
from dreamdd.io.names import CONFIG

HERE = Path(__file__).resolve().parent


def plot(curve: list[dict[str, Any]], final: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    minutes = [r["elapsed_seconds"] / 60 for r in curve]
    ax.plot(minutes, [r["test_mean"] for r in curve], marker="o",
            label=f"snapshots ({curve[0]['repeats']} x {curve[0]['epochs']} epochs)")
    ax.errorbar([final["elapsed_seconds"] / 60], [final["test_mean"]], yerr=[final["test_std"]], fmt="s",
                color="C3", capsize=4, label=f"final set ({final['repeats']} x {final['epochs']} epochs)")
    ax.set_xlabel("wall time of distillation (min)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--preset", default="cifar10-cpu-2h")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", required=True, help="the run folder (reused or continued when it exists)")
    p.add_argument("--every-minutes", type=float, default=20.0, help="wall time between evaluated snapshots")
    p.add_argument("--curve-repeats", type=int, default=1, help="networks per curve point")
    p.add_argument("--curve-epochs", type=int, default=300, help="epochs per curve network")
    p.add_argument("--final-repeats", type=int, help="networks for the final set (default: the preset's eval.repeats)")
    p.add_argument("--jobs", type=int, default=2, help="evaluations in parallel, one thread each")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="the distillation's")
    p.add_argument("--compile", action="store_true", help="the distillation's networks compiled (dreamdd --compile)")
    p.add_argument("--eval-precision", default="fp32", choices=["fp32", "bf16"],
                   help="precision of the evaluation networks (curve and final set)")
    p.add_argument("--eval-compile", action="store_true", help="the evaluation networks compiled")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="JSON result (default: benchmarks/results/budget-<preset>.json)")
    args = p.parse_args(argv)

    started = time.time()
    run = Path(args.run)
    summary = distill_or_continue(run, quiet=False, dataset=args.dataset, ipc=args.ipc, preset=args.preset,
                                  seed=args.seed, overrides=parse_overrides(args.overrides),
                                  precision=args.precision, compile=args.compile)
    saved = snapshots(run)
    if not saved:
        p.error(f"{run} has no snapshots: give the preset distill.snapshot_every (--set distill.snapshot_every=1)")
    elapsed = {it: snapshot_elapsed(s) for it, s in saved.items()}
    points = pick_snapshots(elapsed, 60 * args.every_minutes)
    last = str(saved[points[-1]])
    final_repeats = args.final_repeats or yaml.safe_load((run / CONFIG).read_text())["eval"]["repeats"]
    evaluation = (args.eval_precision, args.eval_compile)
    tasks = [(evaluate_snapshot, last, final_repeats, None, *evaluation)]
    tasks += [(evaluate_snapshot, str(saved[it]), args.curve_repeats, args.curve_epochs, *evaluation)
              for it in points]
    print(f"evaluating {len(points)} snapshots and the final set", file=sys.stderr, flush=True)
    final, *curve = run_all(tasks, args.jobs)

    print(f"\n{args.dataset} IPC {args.ipc}, preset {args.preset}: {summary.get('iterations')} outer iterations in "
          f"{elapsed[points[-1]] / 60:.1f} min")
    print(f"{'iteration':>9} {'minutes':>8} {'test':>7}   ({args.curve_repeats} x {args.curve_epochs} epochs)")
    for r in curve:
        print(f"{r['iteration']:>9} {r['elapsed_seconds'] / 60:>8.1f} {r['test_mean']:>7.2f}")
    print(f"final set: test {final['test_mean']:.2f} +- {final['test_std']:.2f} ({final['repeats']} x "
          f"{final['epochs']} epochs, the preset's protocol)")

    out = Path(args.out) if args.out else HERE / "results" / f"budget-{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(curve, final, f"{args.dataset} IPC {args.ipc}, preset {args.preset}: test accuracy against wall time",
         out.with_suffix(".png"))
    write_result(out, {
        "dataset": args.dataset, "ipc": args.ipc, "preset": args.preset, "seed": args.seed, "run": str(run),
        "overrides": args.overrides, "precision": args.precision, "compile": args.compile,
        "eval_precision": args.eval_precision, "eval_compile": args.eval_compile,
        "every_minutes": args.every_minutes, "curve": curve, "final": final,
        "timings": summary.get("timings"), "wall_seconds": time.time() - started})
    print(f"written {out} and {out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
