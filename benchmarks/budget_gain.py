"""What `dreamdd distill --budget` buys: the final set's gain over its own initial set, for DREAM, random
selection, and DREAM at the preset's (the paper's) image rate, under the same wall-time budget.

    .venv/bin/python benchmarks/budget_gain.py --dataset cifar10 --budget 30m --ipc 10 --seed 0 \
        --root runs/budget-gain [--arms dream random paper] [--eval-repeats 1] [--eval-epochs 300] \
        [--set data.root=DATA ...]

Arms, each `dreamdd distill --dataset D --ipc N --budget B` with the dataset's default preset:
  dream   representative init and DREAM selection, image lr chosen by the budget's validation probes
  random  random real init and random real batches, image lr chosen the same way
  paper   as dream, with distill.budget_calibrate false: the same budget and horizon planning, the preset's rate
The arms run at the same time, one process of one thread each, so that they share the machine's load equally; a
budget is wall time, so what else runs on the machine is recorded (load average) beside the result.

Each run saves its initial set (snapshot at iteration 0) and its final set; both are evaluated afterwards the same
way (--eval-repeats fresh networks of --eval-epochs epochs under the run's own protocol, checkpoint chosen on the
validation split, test split only reported), so "gain" compares like with like. Finished runs and evaluations
are reused (evaluations are cached beside each snapshot). Writes
benchmarks/results/budget-gain-<dataset>-<budget>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from dreamdd.budget import parse_duration
from dreamdd.config import parse_overrides
from dreamdd.experiments import distill_or_continue, evaluate_snapshots, run_all, snapshots, write_result
from dreamdd.io.names import BUDGET

HERE = Path(__file__).resolve().parent

ARMS = {"dream": ("dream", "representative", True), "random": ("random", "real", True),
        "paper": ("dream", "representative", False)}


def distill_arm(out: str, dataset: str, ipc: int, seed: int, budget: str, arm: str,
                overrides: dict[str, Any]) -> dict[str, Any]:
    """One budgeted run with snapshots of its initial and final set and no evaluation; a finished run is kept."""
    selector, init, calibrate = ARMS[arm]
    settings = {**overrides, "distill": {**overrides.get("distill", {}), "snapshot_every": 10 ** 9,
                                         "eval_every": 0, "budget_calibrate": calibrate}}
    load_before = os.getloadavg()[0]
    summary = distill_or_continue(out, dataset=dataset, ipc=ipc, seed=seed, selector=selector, init=init,
                                  budget=budget, overrides=settings)
    return {"summary": summary, "load_average_start": load_before, "load_average_end": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--budget", required=True, help="wall time per run, e.g. 30m")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    p.add_argument("--root", required=True, help="folder of the run folders (reused when they exist)")
    p.add_argument("--eval-repeats", type=int, default=1, help="networks per evaluated set")
    p.add_argument("--eval-epochs", type=int, default=300, help="epochs per network (the same for both sets)")
    p.add_argument("--jobs", type=int, default=2, help="evaluations in parallel, one thread each")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="JSON result (default: benchmarks/results/budget-gain-<dataset>-<budget>.json)")
    args = p.parse_args(argv)
    parse_duration(args.budget)

    started = time.time()
    overrides = parse_overrides(args.overrides)
    root = Path(args.root)
    runs = {arm: root / f"{args.dataset}-{args.budget}-{arm}-s{args.seed}" for arm in args.arms}
    print(f"distilling {', '.join(args.arms)} at the same time, {args.budget} each", file=sys.stderr, flush=True)
    distilled = run_all([(distill_arm, str(runs[arm]), args.dataset, args.ipc, args.seed, args.budget, arm,
                          overrides) for arm in args.arms], len(args.arms))

    sets = []
    for arm in args.arms:
        saved = list(snapshots(runs[arm]).values())          # the initial set and the final one
        sets += [str(saved[0]), str(saved[-1])]
    print(f"evaluating {len(sets)} sets (identical ones once)", file=sys.stderr, flush=True)
    scores = evaluate_snapshots(sets, args.eval_repeats, args.eval_epochs, args.jobs)

    records = []
    print(f"\n{args.dataset} IPC {args.ipc}, --budget {args.budget}, seed {args.seed} "
          f"({args.eval_repeats} x {args.eval_epochs} epochs per set)")
    print(f"{'arm':>7} {'iters':>6} {'inner':>6} {'lr x':>5} {'loop min':>9} {'initial':>8} {'final':>7} {'gain':>6}")
    for i, arm in enumerate(args.arms):
        initial, final = scores[2 * i], scores[2 * i + 1]
        plan = json.loads((runs[arm] / BUDGET).read_text())
        multiple = plan["lr"] / plan["paper_lr"]
        record = {"arm": arm, "run": str(runs[arm]), "plan": plan, "initial": initial, "final": final,
                  "gain": final["test_mean"] - initial["test_mean"],
                  "gain_val": final["val_mean"] - initial["val_mean"],
                  "load_average": [distilled[i]["load_average_start"], distilled[i]["load_average_end"]],
                  "timings": distilled[i]["summary"].get("timings")}
        records.append(record)
        inner = (record["timings"] or {}).get("inner_iterations", "?")     # the deadline may cut the last outer one
        print(f"{arm:>7} {final['iteration']:>6} {inner:>6} {multiple:>5.3g} "
              f"{final['elapsed_seconds'] / 60:>9.1f} {initial['test_mean']:>8.2f} {final['test_mean']:>7.2f} "
              f"{record['gain']:>+6.2f}")

    out = Path(args.out) if args.out else HERE / "results" / f"budget-gain-{args.dataset}-{args.budget}.json"
    write_result(out, {
        "dataset": args.dataset, "ipc": args.ipc, "budget": args.budget, "seed": args.seed,
        "overrides": args.overrides, "eval_repeats": args.eval_repeats, "eval_epochs": args.eval_epochs,
        "arms": records, "wall_seconds": time.time() - started})
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
