"""bfloat16 against fp32, place by place, in one process: how far each autocast place moves from fp32, and how much
faster it runs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision.py --dataset cifar10 --data-root DATA \
        [--width 128] [--repeats 5] [--threads 1] [--compile]  # -> benchmarks/results/precision-<dataset>.json

On real images of the dataset's training split, with a fresh ConvNet-3 (the papers' width 128 by default):
  match      one IDC gradient-matching step of one class (128 real images, 40 decoded synthetic images from
             IPC 10 at factor 2, conv weights, mse, double backward; methods.gradient.GradientMatching): cosine
             of the image gradient to fp32
  network    one SGD step of the network on 128 real images (training.train_step: forward, cross-entropy,
             backward, step): relative difference of the loss
  embed      the selection embedding of 512 images (selection.embed_images, no autograd): mean cosine of each
             image's feature to fp32
  kmeans     DREAM's picks on 1,000 images per class (fp32 k-means on the embeddings of each precision, the same
             seed): share of the picks that agree, over 10 classes
Each timed place alternates fp32 and bf16 --repeats times after a warm-up and reports medians and their ratio.
With --compile, each place is also timed compiled (dreamdd.compilation; in gradient matching only the real side,
whose weight gradients are taken once: the synthetic side's double backward stays eager), in each precision, as
ratios to the eager fp32 median.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def compare(name: str, fp32_fn: Callable[[], Any], bf16_fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Medians of alternating runs (after one warm-up each) and the two outputs."""
    fp32_fn(), bf16_fn()
    t32, t16 = [], []
    for _ in range(repeats):
        a, out32 = timed(fp32_fn, 1)
        b, out16 = timed(bf16_fn, 1)
        t32 += a
        t16 += b
    m32, m16 = statistics.median(t32), statistics.median(t16)
    print(f"{name:>8}: fp32 {m32:.3f} s, bf16 {m16:.3f} s, ratio {m16 / m32:.2f}", flush=True)
    return {"fp32_seconds": m32, "bf16_seconds": m16, "ratio": m16 / m32, "outputs": (out32, out16)}


def compiled(name: str, fn: Callable[[str], Any], repeats: int, fp32_seconds: float) -> dict[str, Any]:
    """The place under --compile (dreamdd.compilation) in each precision: medians after a compiling warm-up, and
    the ratio to the eager fp32 median measured just before."""
    from dreamdd import compilation
    out: dict[str, Any] = {}
    with compilation.mode(True):
        for precision in ("fp32", "bf16"):
            t0 = time.perf_counter()
            fn(precision)
            out[f"compile_seconds_{precision}"] = time.perf_counter() - t0
            seconds = statistics.median(timed(lambda: fn(precision), repeats)[0])
            out[f"compiled_{precision}_seconds"] = seconds
            out[f"compiled_{precision}_ratio"] = seconds / fp32_seconds
    print(f"{name:>8}: compiled fp32 {out['compiled_fp32_seconds']:.3f} s ({out['compiled_fp32_ratio']:.2f}x), "
          f"compiled bf16 {out['compiled_bf16_seconds']:.3f} s ({out['compiled_bf16_ratio']:.2f}x) of eager fp32",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from dreamdd import data as datasets
    from dreamdd.experiments import machine
    from dreamdd.methods.gradient import GradientMatching
    from dreamdd.models import create_model
    from dreamdd.seeding import generator
    from dreamdd.selection.kmeans import kmeans, nearest_to_centroids
    from dreamdd.selection.representative import embed_images
    from dreamdd.synthetic import decode
    from dreamdd.training import train_step

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-root", default="data")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true",
                   help="also time each place compiled (dreamdd.compilation), per precision")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cpu = torch.device("cpu")

    data = datasets.load(args.dataset, root=args.data_root)
    info, bank = data.info, data.train
    channels, size = info.channels, info.image_size
    net = create_model("convnet", num_classes=info.num_classes, channels=channels, image_size=size, width=args.width)

    def real(c: int, n: int, offset: int = 0) -> torch.Tensor:
        return info.normalize(bank.batch(bank.class_indices(c)[offset:offset + n], cpu))

    results: dict[str, Any] = {}

    # match: the image gradient of one gradient-matching step
    methods = {precision: GradientMatching("mse", "conv", precision) for precision in ("fp32", "bf16")}
    x_real, y_real = real(0, 128), torch.zeros(128, dtype=torch.long)
    stored = bank.batch(bank.class_indices(0)[200:210], cpu).clone()
    y_syn = torch.zeros(40, dtype=torch.long)

    def match(precision: str) -> torch.Tensor:
        images = stored.clone().requires_grad_(True)
        syn = info.normalize(decode(images, 2))
        loss = methods[precision].loss(net, x_real, y_real, syn, y_syn)
        (grad,) = torch.autograd.grad(loss, images)
        return grad

    r = compare("match", lambda: match("fp32"), lambda: match("bf16"), args.repeats)
    g32, g16 = r.pop("outputs")
    r["image_grad_cosine"] = float(F.cosine_similarity(g32.flatten(), g16.flatten(), dim=0))
    if args.compile:
        r.update(compiled("match", match, args.repeats, r["fp32_seconds"]))
    results["match"] = r

    # network: one SGD step on real data (a copy of the network each time, so both start alike)
    x_net = torch.cat([real(c, 13) for c in range(info.num_classes)])[:128]
    y_net = torch.arange(info.num_classes).repeat_interleave(13)[:128]

    def network(precision: str) -> float:
        model = create_model("convnet", num_classes=info.num_classes, channels=channels, image_size=size,
                             width=args.width)
        model.load_state_dict(net.state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return float(train_step(model, opt, x_net, y_net, info.num_classes, generator(0, "precision-network"), None,
                                0.0, precision=precision))

    r = compare("network", lambda: network("fp32"), lambda: network("bf16"), args.repeats)
    l32, l16 = r.pop("outputs")
    r["loss_relative_difference"] = abs(l16 - l32) / abs(l32)
    if args.compile:
        r.update(compiled("network", network, args.repeats, r["fp32_seconds"]))
    results["network"] = r

    # embed: the selection embedding of 512 images
    pool = torch.cat([bank.class_indices(c)[:52] for c in range(info.num_classes)])[:512]
    images_fn = lambda idx: info.normalize(bank.batch(idx, cpu))  # noqa: E731

    def embed(precision: str) -> torch.Tensor:
        return embed_images(net, images_fn, pool, 512, precision)

    r = compare("embed", lambda: embed("fp32"), lambda: embed("bf16"), args.repeats)
    e32, e16 = r.pop("outputs")
    r["feature_cosine_mean"] = float(F.cosine_similarity(e32, e16, dim=1).mean())
    if args.compile:
        r.update(compiled("embed", embed, args.repeats, r["fp32_seconds"]))
    results["embed"] = r

    # kmeans: DREAM's picks from each precision's embeddings (fp32 k-means, the same seed), beside the agreement
    # of two k-means seeds on the same fp32 embeddings (how much the picks move for reasons other than precision)
    agree, agree_seeds, total = 0, 0, 0
    for c in range(info.num_classes):
        candidates = bank.class_indices(c)[:1000]
        features = {}
        for precision in ("fp32", "bf16"):
            features[precision] = embed_images(net, images_fn, candidates, 512, precision)

        def picks(x: torch.Tensor, seed: int) -> set[int]:
            centroids = kmeans(x, 10, generator(seed, "precision-kmeans", c)).centroids
            return set(nearest_to_centroids(x, centroids).tolist())

        fp32_picks = picks(features["fp32"], 0)
        agree += len(fp32_picks & picks(features["bf16"], 0))
        agree_seeds += len(fp32_picks & picks(features["fp32"], 1))
        total += len(fp32_picks)
    results["kmeans"] = {"picks_agreement": agree / total, "seed_agreement_fp32": agree_seeds / total,
                         "classes": info.num_classes, "k": 10, "pool": 1000}
    print(f"  kmeans: {100 * agree / total:.0f} % of the picks agree (two seeds in fp32: "
          f"{100 * agree_seeds / total:.0f} %)", flush=True)

    out = Path(args.out) if args.out else HERE / "results" / f"precision-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dataset": args.dataset, "width": args.width, "threads": args.threads,
                               "repeats": args.repeats, "places": results, "machine": machine()}, indent=1) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
