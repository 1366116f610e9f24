"""Memory and speed of prepare and of a short distillation as an ImageNet-layout dataset grows.

A synthetic ImageNet layout (random JPEGs, all 1000 ImageNet-1K classes, train/<wnid>/ and val/<wnid>/) is
generated at several sizes (images per class); for each, `dreamdd prepare imagenet-1k` and a one-outer-iteration
`dreamdd distill` run as child processes, one thread each, and their peak resident memory (getrusage of the
child, ru_maxrss) and wall time are recorded. The generated data and stores are deleted afterwards.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/imagenet_scale.py --root /tmp/dreamdd-scale \
        --per-class 4 16 48 --image-size 64          # -> results/imagenet-scale.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DISTILL_SETTINGS = ["model.width=16", "synth.factor=1", "match.batch_real=16", "select.interval=1",
                    "distill.inner_loop=1", "distill.n_data=256", "distill.eval_every=0",
                    "distill.checkpoint_every=1"]


def jpeg_pool(n: int, seed: int = 0) -> list[bytes]:
    """n distinct random JPEGs of 96..160 x 72..120 pixels (non-square, so prepare resizes and crops)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(96, 161)), int(rng.integers(72, 121))
        # smooth random fields compress like photographs better than white noise does
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def generate(root: Path, per_class: int, val_per_class: int, pool: list[bytes], classes: list[str]) -> int:
    """root/imagenet/{train,val}/<wnid>/*.JPEG; returns the number of training images."""
    k = 0
    for split, n in (("train", per_class), ("val", val_per_class)):
        for wnid in classes:
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{wnid}_{i}.JPEG").write_bytes(pool[k % len(pool)])
                k += 1
    return per_class * len(classes)


def run_child(argv: list[str]) -> dict[str, Any]:
    """Run a command; its wall time, peak RSS (MB) and exit status."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out}")
    return {"seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output": out.strip()[-300:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="scratch folder for the generated data (deleted afterwards)")
    p.add_argument("--per-class", type=int, nargs="+", default=[4, 16, 48], help="training images per class")
    p.add_argument("--val-per-class", type=int, default=1)
    p.add_argument("--classes", type=int, default=1000, help="how many of ImageNet-1K's classes (all: 1000)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--out", default=str(RESULTS / "imagenet-scale.json"))
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    args = p.parse_args(argv)
    from dreamdd.data.subsets import imagenet_wnids
    classes = imagenet_wnids()[:args.classes]
    dataset = "imagenet-1k" if args.classes == 1000 else None
    if dataset is None:
        raise SystemExit("--classes below 1000 is not an ImageNet-1K layout; use 1000")
    pool = jpeg_pool(256)
    rows = []
    python = [sys.executable, "-m", "dreamdd"]
    for per_class in args.per_class:
        root = Path(args.root) / f"per-class-{per_class}"
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        n = generate(root, per_class, args.val_per_class, pool, classes)
        generated = time.perf_counter() - started
        size = str(args.image_size)
        prep = run_child(python + ["prepare", dataset, "--data-root", str(root), "--image-size", size,
                                   "--workers", "1", "--quiet"])
        total = n + args.val_per_class * len(classes)
        store = root / "prepared" / f"{dataset}-{size}x{size}"
        store_mb = sum(f.stat().st_size for f in store.iterdir()) / 2 ** 20
        dist = run_child(python + ["distill", "--dataset", dataset, "--ipc", "1", "--data-root", str(root),
                                   "--image-size", size, "--iterations", "1", "--no-eval", "--quiet",
                                   "--out", str(root / "run")] +
                         [a for s in DISTILL_SETTINGS for a in ("--set", s)])
        rows.append({"per_class": per_class, "train_images": n, "all_images": total,
                     "store_mb": round(store_mb, 1), "generate_seconds": round(generated, 1),
                     "prepare": {k: v for k, v in prep.items() if k != "output"},
                     "prepare_images_per_second": round(total / prep["seconds"], 1),
                     "distill": {k: v for k, v in dist.items() if k != "output"}})
        print(json.dumps(rows[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result = {"benchmark": "imagenet-scale", "time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_after": list(os.getloadavg())},
              "settings": {"classes": args.classes, "image_size": args.image_size, "workers": 1, "threads": 1,
                           "distill": ["--ipc 1", "--iterations 1"] + DISTILL_SETTINGS},
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
