"""How many ATen operations (kernel launches on a GPU) and scalar reads (host syncs on a GPU) one inner iteration
of the distillation loop costs, counted on the CPU with a TorchDispatchMode (dreamdd.experiments.dispatch_counts)
over a fixed run: initialisation and selection included, amortized over the inner iterations.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dispatch.py [--dataset digits] [--ipc 2] [--iterations 2] \
        [--set key=value ...] [--loop-only]             # -> benchmarks/results/dispatch-<dataset>-ipc<N>[-loop].json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    from dreamdd.config import parse_overrides
    from dreamdd.experiments import dispatch_counts, machine
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--ipc", type=int, default=2)
    p.add_argument("--iterations", type=int, default=2, help="outer iterations (the preset's inner loop each)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--loop-only", action="store_true", help="leave the initialisation out of the count")
    p.add_argument("--out", help="result file (default: results/dispatch-<dataset>-ipc<N>[-loop].json)")
    args = p.parse_args(argv)
    result = dispatch_counts(args.dataset, args.ipc, args.iterations, parse_overrides(args.overrides),
                             init=not args.loop_only)
    result["settings"] = args.overrides
    result["machine"] = machine()
    print(f"{args.dataset} IPC {args.ipc}, {result['method']} + {result['selector']}: "
          f"{result['inner_iterations']} inner iterations, {result['ops_per_inner']:.0f} ATen operations and "
          f"{result['scalar_reads_per_inner']:.1f} scalar reads ({result['syncs_per_inner']:.1f} host syncs with the "
          f"value-shaped operations) per inner iteration{', initialisation left out' if args.loop_only else ''}")
    suffix = "-loop" if args.loop_only else ""
    out = Path(args.out) if args.out else HERE / "results" / f"dispatch-{args.dataset}-ipc{args.ipc}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
