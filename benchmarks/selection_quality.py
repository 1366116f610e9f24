"""Selection quality of DREAM's representative selector and its cheaper variants: MMD to the whole class.

For each CIFAR-10 class measured, the whole class (5,000 training images minus the validation split's share) is
embedded by a ConvNet-3 (width 128, instance norm) at its fresh seeded initialisation (the network DREAM clusters
with at the start of every outer iteration; `--train-images N` first trains it on N real images with IDC's
network update instead). Each variant picks 128 images; the score is the MMD between the picked images and the
whole class in the paper-faithful fp32 embedding: RBF kernel exp(-d^2 / (2 s^2)) with s^2 = the median squared
pairwise distance within the class (median heuristic), biased (V-statistic) MMD^2, reported as MMD = sqrt(MMD^2).
Random selection (several draws) is the reference: the paper reports random MMD far above DREAM's.

    .venv/bin/python benchmarks/selection_quality.py [--classes 3] [--seeds 3] [--data-root /work/data]

Writes benchmarks/results/selection_quality.json and selection_quality.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from dreamdd.experiments import convnet, embed, load_cifar, machine, train_real
from dreamdd.selection.kmeans import kmeans, nearest_to_centroids
from dreamdd.selection.representative import cluster_quotas

RESULTS = Path(__file__).resolve().parent / "results"

N_PICK = 128


def median_sq_distance(x: torch.Tensor, sample: int = 1000, seed: int = 0) -> float:
    """Median of pairwise squared distances among (a random subset of) the rows of x, off-diagonal."""
    g = torch.Generator().manual_seed(seed)
    if x.shape[0] > sample:
        x = x[torch.randperm(x.shape[0], generator=g)[:sample]]
    x = x.double()
    d2 = torch.cdist(x, x).pow(2)
    iu = torch.triu_indices(x.shape[0], x.shape[0], 1)
    return float(d2[iu[0], iu[1]].median())


def _kernel_mean(a: torch.Tensor, b: torch.Tensor, gamma: float, block: int = 2048) -> float:
    """Mean of exp(-gamma * ||a_i - b_j||^2) over all pairs, in float64 blocks."""
    total = 0.0
    a, b = a.double(), b.double()
    for s in range(0, a.shape[0], block):
        d2 = torch.cdist(a[s:s + block], b).pow(2)
        total += float(torch.exp(-gamma * d2).sum())
    return total / (a.shape[0] * b.shape[0])


class MMD:
    """MMD of subsets of a fixed set X against X, RBF kernel with the median-heuristic bandwidth of X."""

    def __init__(self, x: torch.Tensor, sigma2: float | None = None):
        self.x = x
        self.sigma2 = median_sq_distance(x) if sigma2 is None else sigma2
        self.gamma = 1.0 / (2.0 * self.sigma2)
        self.k_xx = _kernel_mean(x, x, self.gamma)

    def __call__(self, s: torch.Tensor) -> float:
        mmd2 = _kernel_mean(s, s, self.gamma) + self.k_xx - 2.0 * _kernel_mean(s, self.x, self.gamma)
        return max(mmd2, 0.0) ** 0.5


def mmd(s: torch.Tensor, x: torch.Tensor) -> float:
    """MMD between the rows of s and of x (RBF, median heuristic on x)."""
    return MMD(x)(s)


def representatives(features: torch.Tensor, n: int, seed: int, max_iter: int = 100, tol: float = 1e-4,
                    pool: int | None = None) -> torch.Tensor:
    """Positions (into features) of DREAM's picks: k-means with n clusters (on a random pool when given), the
    sample nearest each centroid (as RepresentativeSelector.choose)."""
    g = torch.Generator().manual_seed(seed)
    candidates = torch.arange(features.shape[0])
    if pool is not None and pool < features.shape[0]:
        candidates = candidates[torch.randperm(features.shape[0], generator=g)[:pool]]
    f = features[candidates]
    with torch.inference_mode():
        r = kmeans(f, n, g, max_iter=max_iter, tol=tol)
        picks = nearest_to_centroids(f, r.centroids, cluster_quotas(r.assignments, n, n))
    return candidates[picks]


def variants(feat32: torch.Tensor, feat_bf16: torch.Tensor, feat_cl: torch.Tensor
             ) -> dict[str, Callable[[int], torch.Tensor]]:
    return {
        "paper: whole class, kmeans++, tol 1e-4, max_iter 100": lambda s: representatives(feat32, N_PICK, s),
        "whole class, max_iter 30": lambda s: representatives(feat32, N_PICK, s, max_iter=30),
        "whole class, max_iter 10": lambda s: representatives(feat32, N_PICK, s, max_iter=10),
        "whole class, tol 1e-3": lambda s: representatives(feat32, N_PICK, s, tol=1e-3),
        "pool 2000": lambda s: representatives(feat32, N_PICK, s, pool=2000),
        "pool 1000": lambda s: representatives(feat32, N_PICK, s, pool=1000),
        "channels_last embedding": lambda s: representatives(feat_cl, N_PICK, s),
        "bf16 autocast embedding": lambda s: representatives(feat_bf16, N_PICK, s),
        "random": lambda s: torch.randperm(feat32.shape[0], generator=torch.Generator().manual_seed(1000 + s))[:N_PICK],
    }


def run(data_root: str, classes: int, seeds: int, random_draws: int, train_images: int, seed: int = 0
        ) -> dict[str, Any]:
    data = load_cifar(data_root)
    net = convnet(seed=seed)
    if train_images:
        train_real(net, data, train_images, seed)
    images_fn = lambda idx: data.info.normalize(data.train.batch(idx, "cpu"))  # noqa: E731
    scores: dict[str, list[float]] = {}
    overlap: dict[str, list[float]] = {}
    for c in range(classes):
        idx = data.train.class_indices(c)
        f32 = embed(net, images_fn, idx, 512)
        fbf = embed(net, images_fn, idx, 512, dtype=torch.bfloat16)
        fcl = embed(net, images_fn, idx, 512, memory_format=torch.channels_last)
        score = MMD(f32)
        paper_picks = {}
        for name, pick in variants(f32, fbf, fcl).items():
            n_runs = random_draws if name == "random" else seeds
            for s in range(n_runs):
                p = pick(seed + s)
                scores.setdefault(name, []).append(score(f32[p]))
                if name.startswith("paper"):
                    paper_picks[s] = set(p.tolist())
                elif name != "random" and s in paper_picks:
                    overlap.setdefault(name, []).append(len(paper_picks[s] & set(p.tolist())) / N_PICK)
    rows = {}
    rnd = statistics.fmean(scores["random"])
    for name, v in scores.items():
        rows[name] = {"mmd_mean": statistics.fmean(v), "mmd_std": statistics.stdev(v) if len(v) > 1 else 0.0,
                      "runs": len(v), "vs_random": statistics.fmean(v) / rnd,
                      "overlap_with_paper_same_seed": statistics.fmean(overlap[name]) if name in overlap else None}
    return {"classes": list(range(classes)), "seeds": seeds, "random_draws": random_draws,
            "network": (f"ConvNet-3 trained on {train_images} real images (IDC network update)" if train_images
                        else "ConvNet-3 at its fresh seeded initialisation (start of an outer iteration)"),
            "kernel": "RBF exp(-d^2/(2 s^2)), s^2 = median pairwise squared distance within the class",
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Network: {result['network']}; classes {result['classes']}; {result['seeds']} seeds per variant, "
             f"{result['random_draws']} random draws; MMD in the fp32 embedding.", "",
             "| selector | MMD to class (mean +- std) | / random | overlap with paper picks (same seed) |",
             "|---|---|---|---|"]
    for name, r in result["rows"].items():
        ov = "-" if r["overlap_with_paper_same_seed"] is None else f"{100 * r['overlap_with_paper_same_seed']:.0f} %"
        lines.append(f"| {name} | {r['mmd_mean']:.4f} +- {r['mmd_std']:.4f} | {r['vs_random']:.2f} | {ov} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="/work/data")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--random-draws", type=int, default=10)
    p.add_argument("--train-images", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    before = machine()
    t0 = time.perf_counter()
    result = run(args.data_root, args.classes, args.seeds, args.random_draws, args.train_images)
    result["wall_seconds"] = time.perf_counter() - t0
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"-trained{args.train_images}" if args.train_images else ""
    payload = {"benchmark": "selection_quality", "machine": before | {"load_average_after": list(os.getloadavg())},
               "args": vars(args), "result": result}
    (out / f"selection_quality{suffix}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / f"selection_quality{suffix}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
