"""Iteration efficiency, the paper's headline claim: how many outer iterations (and how much wall time) DREAM
needs to reach the accuracy random selection ends with.

    .venv/bin/python benchmarks/iterations.py --dataset fashion-mnist --ipc 10 --seeds 0 1 2 --iterations 40 \
        --snapshot-every 1 [--evaluate-at 0 1 2 4 8 16 32 40] [--arms dream random matching init] \
        [--eval-repeats 2] [--eval-epochs 100] \
        [--smooth 3] [--jobs 2] [--runs DIR] [--set key=value ...]

Arms (each at equal iterations and seeds):
    dream     representative matching + representative initialisation (DREAM)
    random    random real batches + random real initialisation (the baseline, plain IDC)
    matching  representative matching only
    init      representative initialisation only

Every run saves a snapshot of its synthetic set every --snapshot-every outer iterations (and at iteration 0);
nothing is evaluated while it distills. Each snapshot is then evaluated with fresh networks: the checkpoint of
each network is chosen on the validation split and its test accuracy reported, so the test split never steers
anything. Curves are the seeds' mean and std of that test accuracy; to tame the jitter from one snapshot to the
next, the mean is also averaged over --smooth neighbouring snapshots, and iterations-to-target uses the smoothed
curves. Target = random selection's final (smoothed) mean accuracy; the script prints the first iteration at
which each arm reaches it, the ratio of random's iterations to the arm's, and the same in wall time.

Finished runs and snapshot evaluations found in --runs are reused, so an interrupted benchmark continues.
Writes benchmarks/results/iterations-<dataset>-ipc<N>.json and .png.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dreamdd.config import parse_overrides
from dreamdd.experiments import (arm_curve, distill_or_continue, evaluate_snapshot, machine, run_all, snapshots,
                                 summarize)

HERE = Path(__file__).resolve().parent
ARMS = {"dream": ("dream", "representative"), "random": ("random", "real"),
        "matching": ("dream", "real"), "init": ("random", "representative")}
LABELS = {"dream": "DREAM (rep. matching + rep. init)", "random": "random selection (baseline)",
          "matching": "rep. matching only", "init": "rep. init only"}


def distill_arm(out: str, dataset: str, ipc: int, preset: str | None, arm: str, seed: int, iterations: int,
                overrides: dict[str, Any]) -> str:
    """Distill one (arm, seed) with snapshots and no evaluation; a finished run in `out` is kept."""
    selector, init = ARMS[arm]
    distill_or_continue(out, dataset=dataset, ipc=ipc, preset=preset, selector=selector, init=init,
                        iterations=iterations, seed=seed, overrides=overrides)
    return out


def plot(curves: dict[str, dict[str, list[float]]], title: str, path: Path, window: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for arm, c in curves.items():
        lo = [m - s for m, s in zip(c["mean"], c["std"])]
        hi = [m + s for m, s in zip(c["mean"], c["std"])]
        minutes = [s / 60 for s in c["elapsed_seconds"]]
        for ax, x in zip(axes, (c["iterations"], minutes)):
            line, = ax.plot(x, c["mean"], marker="o", ms=3, label=LABELS[arm])
            ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color())
            if window > 1:
                ax.plot(x, c["smoothed"], ls="--", lw=1, color=line.get_color())
    axes[0].set_xlabel("outer iteration")
    axes[1].set_xlabel("wall time of distillation (min, mean over seeds)")
    for ax in axes:
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    smoothing = f"; dashed: mean smoothed over {window} neighbouring snapshots" if window > 1 else ""
    fig.suptitle(f"{title}\nmean +- std over seeds (band){smoothing}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--preset", help="default: the dataset's paper preset")
    p.add_argument("--arms", nargs="+", default=["dream", "random"], choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, required=True, help="outer iterations of every run")
    p.add_argument("--snapshot-every", type=int, required=True, help="outer iterations between snapshots")
    p.add_argument("--evaluate-at", type=int, nargs="+", metavar="ITERATION",
                   help="evaluate only the snapshots of these iterations (default: every snapshot), e.g. a doubling "
                        "schedule 0 1 2 4 8 16 that resolves early iterations finely at a few evaluations' cost")
    p.add_argument("--eval-repeats", type=int, default=2, help="evaluation networks per snapshot")
    p.add_argument("--eval-epochs", type=int, help="epochs per evaluation network (default: the recipe's)")
    p.add_argument("--smooth", type=int, default=3, help="snapshots averaged for the smoothed curve (1: none)")
    p.add_argument("--jobs", type=int, default=1, help="runs and evaluations in parallel, one thread each")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs", help="keep run folders here (default: a temporary folder)")
    p.add_argument("--out", help="JSON result (default: benchmarks/results/iterations-<dataset>-ipc<N>.json)")
    args = p.parse_args(argv)
    if "random" not in args.arms:
        p.error("--arms must include random: it sets the target")

    overrides = parse_overrides(args.overrides)
    overrides.setdefault("distill", {}).update({"snapshot_every": args.snapshot_every, "eval_every": 0})
    runs_dir = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="dreamdd-iterations-"))
    started = time.time()
    keys = [(arm, seed) for seed in args.seeds for arm in args.arms]
    folders = {k: str(runs_dir / f"{k[0]}-s{k[1]}") for k in keys}
    print(f"distilling {len(keys)} runs into {runs_dir}", file=sys.stderr, flush=True)
    run_all([(distill_arm, folders[k], args.dataset, args.ipc, args.preset, k[0], k[1], args.iterations, overrides)
             for k in keys], args.jobs)
    wanted = set(args.evaluate_at) if args.evaluate_at else None
    chosen = {k: [str(s) for s in snapshots(folders[k], wanted).values()] for k in keys}
    tasks = [(evaluate_snapshot, s, args.eval_repeats, args.eval_epochs) for k in keys for s in chosen[k]]
    print(f"evaluating {len(tasks)} snapshots", file=sys.stderr, flush=True)
    flat = iter(run_all(tasks, args.jobs))
    records = {k: [next(flat) for _ in chosen[k]] for k in keys}
    curves = {arm: arm_curve([records[(arm, seed)] for seed in args.seeds], args.smooth) for arm in args.arms}
    result = summarize(curves)

    print(f"\n{args.dataset}, IPC {args.ipc}, {args.iterations} outer iterations, seeds {args.seeds}; test accuracy "
          f"({args.eval_repeats} networks per snapshot, smoothed over {args.smooth} snapshots)")
    print(f"target = random selection's final smoothed accuracy {result['target']:.2f} "
          f"(random first reaches it at iteration {result['random_first_reach']})")
    print(f"{'arm':<10} {'final':>15} {'iter to target':>15} {'ratio (reach/horizon)':>22} "
          f"{'min to target':>14} {'time ratio (reach/horizon)':>27}")
    for arm in args.arms:
        a = result["arms"][arm]
        it = a["iterations_to_target"]
        sec = a["seconds_to_target"]
        def shown(key: str) -> str:
            return "at init" if a["reached_by_initial_set"] else "-" if a[key] is None else f"{a[key]:.1f}x"
        print(f"{arm:<10} {a['final_mean']:7.2f} +- {a['final_std']:<4.2f} "
              f"{it if it is not None else '>' + str(args.iterations):>15} "
              f"{shown('ratio_vs_random_reach') + ' / ' + shown('ratio_vs_random_horizon'):>22} "
              f"{'-' if sec is None else f'{sec / 60:.1f}':>14} "
              f"{shown('time_ratio_vs_random_reach') + ' / ' + shown('time_ratio_vs_random_horizon'):>27}")

    stem = f"iterations-{Path(args.dataset).stem}-ipc{args.ipc}"
    out = Path(args.out) if args.out else HERE / "results" / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    title = (f"{args.dataset}, IPC {args.ipc}: test accuracy of snapshots ({args.eval_repeats} networks each, "
             f"{len(args.seeds)} seeds)")
    plot(curves, title, out.with_suffix(".png"), args.smooth)
    out.write_text(json.dumps({
        "dataset": args.dataset, "ipc": args.ipc, "preset": args.preset, "arms": args.arms, "seeds": args.seeds,
        "iterations": args.iterations, "snapshot_every": args.snapshot_every, "evaluate_at": args.evaluate_at,
        "eval_repeats": args.eval_repeats,
        "eval_epochs": args.eval_epochs, "smooth": args.smooth, "jobs": args.jobs, "overrides": overrides,
        "summary": result, "curves": curves, "wall_seconds": time.time() - started, "runs": str(runs_dir),
        "machine": machine()}, indent=1) + "\n")
    print(f"written {out} and {out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
