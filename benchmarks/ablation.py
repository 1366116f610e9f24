"""DREAM's ablation (the paper's Table 3) for any method: representative matching on/off x representative
initialisation on/off, at equal iterations and seeds, with periodic validation to find how many iterations each
combination needs to reach the baseline's accuracy at the end.

    .venv/bin/python benchmarks/ablation.py --method idc --dataset digits --ipc 2 --seeds 0 1 2 --iterations 20 \
        [--preset dc] [--eval-every 5] [--set key=value ...]

Baseline = random real batches and random real initialisation, with the method's settings (--baseline same), or
for IDC the baseline as the DREAM paper ran it (--baseline idc: IDC's own 64 real images per class instead of
DREAM's 128; presets/idc.yaml). The JSON and the printed table name the baseline. "Iter" = the first periodic evaluation at which
the combination's validation accuracy (mean over seeds) reaches the baseline's last periodic validation accuracy;
every point of these curves uses the same protocol (distill.eval_repeats networks, distill.eval_epochs epochs), and
the test split is touched once per run, by the final evaluation, which gives the Top-1 column. Finished runs found
in --runs are read, not repeated, so a table can be re-summarized. With --reuse FILE, the rows of an earlier
result of the same settings (method, dataset, IPC, preset, baseline, iterations, overrides) and the same seeds are
taken from it rather than re-run, so arms can be added to a table whose run folders are gone. Writes JSON to
benchmarks/results/ablation-<method>-<dataset>-ipc<N>.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from dreamdd.config import list_presets, parse_overrides
from dreamdd.evaluation import mean_std
from dreamdd.experiments import distill_or_continue, mean_curve, periodic_curve
from dreamdd.runs import iterations_to_reach

HERE = Path(__file__).resolve().parent
COMBINATIONS = [("random", "real"), ("dream", "real"), ("random", "representative"), ("dream", "representative")]
ARMS = {"baseline": COMBINATIONS[0], "matching": COMBINATIONS[1], "init": COMBINATIONS[2], "both": COMBINATIONS[3]}
IDC_BATCH_REAL = 64     # IDC's argument.py default, the baseline of the DREAM paper's comparisons


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="idc", help="idc, dc, dsa, dm, mtt, dreamplus")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--preset", help="default: the method's preset (dc, dsa, dm, mtt, dreamplus) for those methods, "
                                    "the dataset's for idc")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, required=True, help="outer iterations of every run")
    p.add_argument("--eval-every", type=int, help="outer iterations between validation passes (default: 1/10)")
    p.add_argument("--eval-epochs", type=int, help="epochs of a periodic validation network")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs", help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--baseline", choices=["same", "idc"], default="same",
                   help="same: random selection with the method's settings; idc (method idc only): IDC's own "
                        f"baseline with {IDC_BATCH_REAL} real images per class")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                   help="which combinations to run (default: all four; the baseline always runs)")
    p.add_argument("--out", help="JSON result file "
                                 "(default: benchmarks/results/ablation-<method>-<dataset>-ipc<N>.json)")
    p.add_argument("--reuse", metavar="FILE",
                   help="an earlier result JSON: its rows of the same settings and seeds are kept, not re-run")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    preset = args.preset or (args.method if args.method != "idc" and args.method in list_presets() else None)
    overrides = parse_overrides(args.overrides)
    distill_settings = overrides.setdefault("distill", {})
    distill_settings["eval_every"] = args.eval_every or max(1, args.iterations // 10)
    if args.eval_epochs:
        distill_settings["eval_epochs"] = args.eval_epochs
    if args.baseline == "idc" and args.method != "idc":
        p.error("--baseline idc is IDC's own baseline; use it with --method idc")
    runs_dir = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="dreamdd-ablation-"))
    baseline = (f"IDC's own baseline (random batches of {IDC_BATCH_REAL} real images per class)"
                if args.baseline == "idc" else "random selection with the method's settings")
    settings = {"method": args.method, "dataset": args.dataset, "ipc": args.ipc, "preset": preset,
                "baseline": baseline, "iterations": args.iterations, "seeds": args.seeds, "overrides": overrides}
    reusable = reusable_rows(Path(args.reuse), settings) if args.reuse else {}
    rows, started = [], time.time()
    arms = [ARMS[a] for a in ARMS if a in args.arms or a == "baseline" or ARMS[a] in reusable]
    for selector, init in arms:
        if (selector, init) in reusable:
            rows.append(reusable[(selector, init)])
            print(f"  {args.method} selector={selector} init={init}: kept from {args.reuse}", file=sys.stderr)
            continue
        results, curves = [], []
        arm_overrides = overrides
        if args.baseline == "idc" and (selector, init) == COMBINATIONS[0]:
            arm_overrides = copy.deepcopy(overrides)
            arm_overrides.setdefault("match", {})["batch_real"] = IDC_BATCH_REAL
        for seed in args.seeds:
            tag = "-idc64" if arm_overrides is not overrides else ""
            out = runs_dir / f"{args.method}-{selector}-{init}{tag}-s{seed}"
            summary = distill_or_continue(out, evaluate=True, dataset=args.dataset, ipc=args.ipc, preset=preset, method=args.method,
                               selector=selector, init=init, iterations=args.iterations, seed=seed,
                               device=args.device, overrides=arm_overrides)
            results.append(summary["evaluation"] | {"wall_seconds": summary.get("wall_seconds"),
                                                    "seconds_per_inner_iteration":
                                                        summary["timings"]["seconds_per_inner_iteration"],
                                                    "select_share": summary["timings"]["select_share"]})
            curves.append(periodic_curve(out))
            print(f"  {args.method} selector={selector} init={init} seed={seed}: test "
                  f"{results[-1]['test_mean']:.2f}", file=sys.stderr, flush=True)
        test_mean, test_std = mean_std([r["test_mean"] for r in results])
        last_mean, last_std = mean_std([r.get("test_last_mean", float("nan")) for r in results])
        seeds_curve = mean_curve(curves)     # runs of older versions may lack the last iteration's point
        rows.append({"method": args.method, "representative_matching": selector == "dream",
                     "representative_init": init == "representative", "selector": selector, "init": init,
                     "test_mean": test_mean, "test_std": test_std, "test_last_mean": last_mean,
                     "test_last_std": last_std, "protocol": results[0].get("protocol"),
                     "seconds_per_inner_iteration": [r["seconds_per_inner_iteration"] for r in results],
                     "select_share": [r["select_share"] for r in results],
                     "test_per_seed": [r["test_mean"] for r in results],
                     "wall_seconds_per_run": [r["wall_seconds"] for r in results],
                     "val_final": seeds_curve[-1][1] if seeds_curve else float("nan"),
                     "val_curve": {str(it): acc for it, acc in seeds_curve}})
    target = rows[0]["val_final"]
    for row in rows:
        row["iterations_to_baseline"] = iterations_to_reach(
            [(int(it), acc) for it, acc in row["val_curve"].items()], target)

    print(f"\nbaseline: {baseline}; evaluation protocol {rows[0]['protocol']}")
    print(f"{args.dataset}, IPC {args.ipc}, {args.iterations} iterations, seeds {args.seeds}"
          f" (Iter: first periodic evaluation reaching the baseline's last periodic validation accuracy {target:.2f})")
    print(f"{'Base':<10} {'Rep. matching':<14} {'Rep. init':<10} {'Top-1 (test)':<16} {'last epoch':<16} "
          f"{'Iter':>6}")
    for row in rows:
        it = row["iterations_to_baseline"]
        print(f"{row['method']:<10} {'yes' if row['representative_matching'] else '-':<14} "
              f"{'yes' if row['representative_init'] else '-':<10} "
              f"{row['test_mean']:6.2f} +- {row['test_std']:<5.2f}  "
              f"{row['test_last_mean']:6.2f} +- {row['test_last_std']:<5.2f}  "
              f"{it if it is not None else '>' + str(args.iterations):>6}")
    name = f"ablation-{args.method}-{Path(args.dataset).stem}-ipc{args.ipc}.json"
    out = Path(args.out) if args.out else HERE / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**settings, "baseline_val_final": target, "rows": rows, "wall_seconds": time.time() - started,
                               "torch": torch.__version__, "python": platform.python_version(),
                               "runs": str(runs_dir)}, indent=2) + "\n")
    print(f"written {out}")
    return 0


def reusable_rows(path: Path, settings: dict) -> dict:
    """The rows of an earlier result that were run with exactly these settings and seeds, by (selector, init);
    none when any setting differs (a row of other settings would not be comparable)."""
    earlier = json.loads(path.read_text())
    if any(earlier.get(key) != value for key, value in settings.items()):
        differing = [key for key, value in settings.items() if earlier.get(key) != value]
        print(f"  {path}: not reused, its {', '.join(differing)} differ", file=sys.stderr)
        return {}
    return {(row["selector"], row["init"]): row for row in earlier["rows"]}


if __name__ == "__main__":
    sys.exit(main())
