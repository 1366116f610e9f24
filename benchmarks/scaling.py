"""One process against N processes under torchrun (gloo on the CPU) on the same run and the same cores: the
loop's seconds per inner iteration of each, their ratio, and the maximum pixel difference of the two artifacts.

    .venv/bin/python benchmarks/scaling.py --dataset digits --ipc 10 --iterations 4 --processes 2 \
        [--set key=value ...] [--runs DIR]              # -> benchmarks/results/scaling-<dataset>-ipc<N>-p<P>.json

The single process gets N threads, each of the N processes one (OMP_NUM_THREADS), so both use the same cores.
Both runs skip the final evaluation; the runs are made one after the other, never at the same time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(command: list[str], threads: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    import dreamdd
    from dreamdd.experiments import machine
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs", help="keep the two run folders here (default: a temporary folder)")
    p.add_argument("--out", help="result file (default: results/scaling-<dataset>-ipc<N>-p<P>.json)")
    args = p.parse_args(argv)
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="dreamdd-scaling-"))
    common = ["-m", "dreamdd", "distill", "--dataset", args.dataset, "--ipc", str(args.ipc), "--iterations",
              str(args.iterations), "--no-eval", "--quiet", *[f"--set={o}" for o in args.overrides]]
    one, many = runs / "one", runs / f"p{args.processes}"
    run([sys.executable, *common, "--out", str(one)], threads=args.processes)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.processes}",
         *common, "--out", str(many)], threads=1)
    seconds = {}
    for name, folder in (("one", one), ("many", many)):
        summary = json.loads((folder / "summary.json").read_text())
        seconds[name] = summary["timings"]["seconds_per_inner_iteration"]
    difference = (dreamdd.load_distilled(one).images - dreamdd.load_distilled(many).images).abs().max().item()
    result = {"dataset": args.dataset, "ipc": args.ipc, "iterations": args.iterations, "processes": args.processes,
              "settings": args.overrides, "seconds_per_inner_iteration_1": seconds["one"],
              f"seconds_per_inner_iteration_{args.processes}": seconds["many"],
              "ratio": seconds["many"] / seconds["one"], "max_pixel_difference": difference, "machine": machine()}
    print(f"{args.dataset} IPC {args.ipc}: 1 process ({args.processes} threads) {seconds['one']:.3f} s per inner "
          f"iteration, {args.processes} processes (1 thread each) {seconds['many']:.3f} s: ratio "
          f"{result['ratio']:.2f}; max pixel difference {difference:.2e}")
    out = Path(args.out) if args.out else HERE / "results" / f"scaling-{args.dataset}-ipc{args.ipc}-p{args.processes}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
