"""bfloat16 against fp32 at equal iterations: does a set distilled under --precision bf16 train networks as well as
one distilled in fp32, and do networks trained in bf16 test as well as in fp32?

    .venv/bin/python benchmarks/precision_accuracy.py --dataset fashion-mnist --seeds 0 1 2 --iterations 16 \
        [--eval-repeats 2] [--eval-epochs 100] [--jobs 2] [--runs DIR] [--set key=value ...]

For each seed, DREAM (representative matching and initialisation) distills the same --iterations outer iterations
twice, once per precision, with everything else equal. The final set of each run is evaluated twice, by networks
trained in fp32 and in bf16 (each checkpoint chosen on validation, test reported), so the table separates the
two places a user's run autocasts: the distillation (rows) and the evaluation (columns). The decision rule of
dreamdd's default: bf16 is acceptable where its mean is within one std (over seeds) of fp32's.

Finished runs and evaluations found in --runs are reused. Writes benchmarks/results/precision-accuracy-<dataset>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dreamdd.config import parse_overrides
from dreamdd.experiments import distill_or_continue, evaluate_snapshot, run_all, snapshots, write_result

HERE = Path(__file__).resolve().parent
PRECISIONS = ("fp32", "bf16")


def distill_run(out: str, dataset: str, ipc: int, preset: str | None, seed: int, iterations: int, precision: str,
                overrides: dict[str, Any]) -> dict[str, Any]:
    """DREAM for `iterations` outer iterations in `precision`, with a snapshot of its final set."""
    return distill_or_continue(out, dataset=dataset, ipc=ipc, preset=preset, selector="dream",
                               init="representative", iterations=iterations, seed=seed, precision=precision,
                               overrides=overrides)


def cell(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--preset", help="default: the dataset's paper preset")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, required=True, help="outer iterations of every run")
    p.add_argument("--eval-repeats", type=int, default=2, help="evaluation networks per set and precision")
    p.add_argument("--eval-epochs", type=int, help="epochs per evaluation network (default: the recipe's)")
    p.add_argument("--jobs", type=int, default=1, help="runs and evaluations in parallel, one thread each")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs", help="keep run folders here (default: a temporary folder)")
    p.add_argument("--out", help="JSON result (default: benchmarks/results/precision-accuracy-<dataset>.json)")
    args = p.parse_args(argv)

    overrides = parse_overrides(args.overrides)
    if "precision" in overrides:
        p.error("the precision is what this benchmark varies: do not --set it")
    overrides.setdefault("distill", {}).update({"snapshot_every": args.iterations, "eval_every": 0})
    runs_dir = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="dreamdd-precision-"))
    started = time.time()
    keys = [(precision, seed) for seed in args.seeds for precision in PRECISIONS]
    folders = {k: str(runs_dir / f"{k[0]}-s{k[1]}") for k in keys}
    print(f"distilling {len(keys)} runs into {runs_dir}", file=sys.stderr, flush=True)
    summaries = dict(zip(keys, run_all([(distill_run, folders[k], args.dataset, args.ipc, args.preset, k[1],
                                         args.iterations, k[0], overrides) for k in keys], args.jobs)))
    finals = {k: str(snapshots(folders[k], {args.iterations})[args.iterations]) for k in keys}
    evals = [(k, q) for k in keys for q in PRECISIONS]
    print(f"evaluating {len(evals)} (set, precision) pairs", file=sys.stderr, flush=True)
    records = dict(zip(evals, run_all([(evaluate_snapshot, finals[k], args.eval_repeats, args.eval_epochs, q)
                                       for k, q in evals], args.jobs)))

    table: dict[str, dict[str, Any]] = {}
    for distilled in PRECISIONS:
        for evaluated in PRECISIONS:
            tests = [records[((distilled, s), evaluated)]["test_mean"] for s in args.seeds]
            seconds = [records[((distilled, s), evaluated)]["eval_seconds"] for s in args.seeds]
            table[f"{distilled}/{evaluated}"] = {**cell(tests), "per_seed": tests,
                                                 "eval_seconds_mean": statistics.fmean(seconds)}
    loop = {q: statistics.fmean(summaries[(q, s)]["timings"]["seconds_per_inner_iteration"] for s in args.seeds)
            for q in PRECISIONS}
    reference = table["fp32/fp32"]
    verdict = {name: {"difference": row["mean"] - reference["mean"],
                      "within_one_std": abs(row["mean"] - reference["mean"]) <= max(reference["std"], row["std"])}
               for name, row in table.items() if name != "fp32/fp32"}

    print(f"\n{args.dataset}, IPC {args.ipc}, DREAM, {args.iterations} outer iterations, seeds {args.seeds}; test "
          f"accuracy of the final set ({args.eval_repeats} networks per set and precision)")
    print(f"{'distilled / evaluated':<22} {'test':>16} {'vs fp32/fp32':>13} {'eval s':>8}")
    for name, row in table.items():
        diff = "" if name == "fp32/fp32" else f"{verdict[name]['difference']:+.2f}"
        print(f"{name:<22} {row['mean']:7.2f} +- {row['std']:<5.2f} {diff:>13} {row['eval_seconds_mean']:8.1f}")
    print(f"seconds per inner iteration: fp32 {loop['fp32']:.2f}, bf16 {loop['bf16']:.2f} "
          f"(ratio {loop['bf16'] / loop['fp32']:.2f}; {args.jobs} jobs at once)")

    out = Path(args.out) if args.out else HERE / "results" / f"precision-accuracy-{Path(args.dataset).stem}.json"
    write_result(out, {
        "dataset": args.dataset, "ipc": args.ipc, "preset": args.preset, "seeds": args.seeds,
        "iterations": args.iterations, "eval_repeats": args.eval_repeats, "eval_epochs": args.eval_epochs,
        "jobs": args.jobs, "overrides": overrides, "table": table, "verdict": verdict,
        "seconds_per_inner_iteration": loop, "wall_seconds": time.time() - started, "runs": str(runs_dir)})
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
