"""What one class's image step costs as the number of classes grows: the whole-set step (the gradient of the whole
set, zero outside the class, and SGD over every image) against ImageSGD.class_step on the class's own rows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/image_step.py [--classes 10 100 1000] [--ipc 10] [--size 32] \
        [--steps 30]                                         # -> benchmarks/results/image-step.json

The loss is a trivial function of the class's decoded images (factor 2), so the time is the step's own: the
backward into the images and the optimizer. Milliseconds per class step, median of --steps steps over the classes
in turn, owed momentum paid at the end (the loop pays it once per outer iteration).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dreamdd.image_optimizer import ImageSGD
from dreamdd.synthetic import SyntheticSet

HERE = Path(__file__).resolve().parent


def _time_steps(classes: int, ipc: int, size: int, steps: int, per_class: bool) -> float:
    """Median milliseconds of a class step."""
    synthetic = SyntheticSet(torch.rand(classes * ipc, 3, size, size), classes, factor=2)
    optimizer = ImageSGD(synthetic.images, 0.01, 0.5, classes=classes)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 3):                      # 3 warm-up steps
        c = step % classes
        started = time.perf_counter()
        if per_class:
            rows = synthetic.class_rows(c)
            images, _ = rows.sample(c, 10 ** 6, g)
            (images ** 2).mean().backward()
            optimizer.class_step(c, rows.images.grad)
        else:
            images, _ = synthetic.sample(c, 10 ** 6, g)
            optimizer.zero_grad(set_to_none=True)
            (images ** 2).mean().backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    optimizer.flush()
    return 1000 * statistics.median(times[3:])


def main(argv: list[str] | None = None) -> int:
    from dreamdd.experiments import machine
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", help="result file (default: results/image-step.json)")
    args = p.parse_args(argv)
    rows = []
    print(f"{'classes':>8} {'whole-set ms':>13} {'class ms':>9} {'ratio':>6}")
    for classes in args.classes:
        whole = _time_steps(classes, args.ipc, args.size, args.steps, per_class=False)
        own = _time_steps(classes, args.ipc, args.size, args.steps, per_class=True)
        rows.append({"classes": classes, "whole_set_ms": whole, "class_ms": own, "ratio": own / whole})
        print(f"{classes:>8} {whole:>13.2f} {own:>9.2f} {own / whole:>6.3f}")
    out = Path(args.out) if args.out else HERE / "results" / "image-step.json"
    out.write_text(json.dumps({"ipc": args.ipc, "size": args.size, "steps": args.steps, "rows": rows,
                               "threads": torch.get_num_threads(), "machine": machine()}, indent=1) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
