"""dreamdd's torch k-means against scikit-learn and faiss-cpu on DREAM's selection workload (2 threads).

Features are real: one class of CIFAR-10 (5000 images; and a random pool of 1000 of them) and 6000 MNIST images of
one digit (padded to 32x32), passed through a randomly initialised ConvNet-3 (width 128, instance norm, ReLU,
average pooling): the network DREAM clusters with at the start of every outer iteration; 128*4*4 = 2048-d.
Without the data files the script falls back to gaussian blobs and says so. k = 128, max_iter = 100, tol = 1e-4.
Inertia is recomputed in float64 from each method's centroids (exact nearest assignment) so all are comparable.
faiss gets niter = max_iter (it has no tolerance but stops once its objective no longer changes).

    .venv/bin/python benchmarks/kmeans_compare.py [--seeds 3] [--data /work/shared/data]
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dreamdd.selection import kmeans

K, MAX_ITER, TOL, THREADS = 128, 100, 1e-4, 2
HERE = Path(__file__).resolve().parent


def convnet3(channels: int, width: int = 128) -> nn.Sequential:
    """ConvNet-3 feature extractor (IDC/DREAM): 3 x {conv3x3, instance norm, ReLU, avgpool 2}, flattened."""
    layers, c = [], channels
    for _ in range(3):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(),
                   nn.AvgPool2d(2)]
        c = width
    return nn.Sequential(*layers, nn.Flatten())


def embed(images: torch.Tensor, seed: int) -> tuple[np.ndarray, float]:
    torch.manual_seed(seed)
    net = convnet3(images.shape[1]).eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        feats = torch.cat([net(images[s:s + 512]) for s in range(0, images.shape[0], 512)])
    return feats.numpy().astype(np.float32), time.perf_counter() - t0


def cifar_class(root: Path, label: int) -> torch.Tensor:
    from PIL import Image
    z = np.load(root / "cifar10-jpeg" / "cifar10_jpeg_q75.npz")
    blob, offsets, labels = z["train_jpeg"], z["train_offsets"], z["y_train"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                       for i in np.flatnonzero(labels == label)])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    return (x - mean[:, None, None]) / std[:, None, None]


def mnist_class(root: Path, label: int, count: int) -> torch.Tensor:
    with gzip.open(root / "mnist" / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(root / "mnist" / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = torch.from_numpy(images[labels == label][:count].copy()).float().unsqueeze(1) / 255
    x = nn.functional.pad(x, (2, 2, 2, 2))
    return (x - 0.1307) / 0.3081


def blobs(n: int, d: int = 2048, centers: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)).astype(np.float32)
    return c[rng.integers(centers, size=n)] + 0.7 * rng.normal(size=(n, d)).astype(np.float32)


def workloads(root: Path) -> list[dict]:
    try:
        cifar = cifar_class(root, 0)
        mnist = mnist_class(root, 3, 6000)
    except (OSError, KeyError, ValueError) as err:
        print(f"data not found ({err}); using gaussian blobs", file=sys.stderr)
        return [{"name": f"blobs {n}x2048", "source": "gaussian blobs (300 centres)", "x": blobs(n)}
                for n in (5000, 1000, 6000)]
    pool = torch.randperm(cifar.shape[0], generator=torch.Generator().manual_seed(0))[:1000]
    out = []
    for name, source, images in (("cifar10 class 5000x2048", "CIFAR-10 airplane, all 5000", cifar),
                                 ("cifar10 pool 1000x2048", "CIFAR-10 airplane, random 1000", cifar[pool]),
                                 ("mnist class 6000x2048", "MNIST digit 3, first 6000, padded to 32x32", mnist)):
        x, seconds = embed(images, seed=0)
        out.append({"name": name, "source": source + ", random ConvNet-3 features", "x": x, "embed_seconds": seconds})
    return out


def inertia64(x: np.ndarray, centroids: np.ndarray) -> float:
    x64, c64 = torch.from_numpy(x).double(), torch.from_numpy(np.asarray(centroids)).double()
    return float(torch.cdist(x64, c64).min(1).values.pow(2).sum())


def run_torch(x: np.ndarray, seed: int, init: str):
    r = kmeans(torch.from_numpy(x), K, torch.Generator().manual_seed(seed), init=init, max_iter=MAX_ITER, tol=TOL)
    return r.centroids.numpy(), r.iterations


def run_sklearn(x: np.ndarray, seed: int):
    from sklearn.cluster import KMeans
    km = KMeans(n_clusters=K, init="k-means++", n_init=1, max_iter=MAX_ITER, tol=TOL, algorithm="lloyd",
                random_state=seed).fit(x)
    return km.cluster_centers_, int(km.n_iter_)


def run_faiss(x: np.ndarray, seed: int, init: str):
    """faiss.Kmeans with niter = max_iter; faiss stops by itself once the objective stops changing."""
    import faiss
    method = {"random": faiss.ClusteringInitMethod_RANDOM, "kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS}
    km = faiss.Kmeans(x.shape[1], K, niter=MAX_ITER, seed=seed + 1, verbose=False, init_method=method[init],
                      min_points_per_centroid=1, max_points_per_centroid=10 ** 6)  # no subsampling, no warning
    km.train(np.ascontiguousarray(x))
    return km.centroids, len(km.obj)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", default="/work/shared/data")
    parser.add_argument("--out", default=str(HERE / "results" / "kmeans_compare.json"))
    args = parser.parse_args()
    import faiss
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(THREADS)
    faiss.omp_set_num_threads(THREADS)
    rows, load_before = [], os.getloadavg()
    with threadpool_limits(THREADS):
        warm = blobs(2 * K, 64)  # first calls pay one-off library start-up costs; keep them out of the timings
        run_torch(warm, 0, "kmeans++"), run_sklearn(warm, 0), run_faiss(warm, 0, "kmeans++")
        for w in workloads(Path(args.data)):
            x = w["x"]
            runs: dict[str, list] = {}
            for seed in range(args.seeds):
                methods = {
                    "torch kmeans++ (dreamdd)": lambda: run_torch(x, seed, "kmeans++"),
                    "torch random init (dreamdd)": lambda: run_torch(x, seed, "random"),
                    "sklearn KMeans lloyd": lambda: run_sklearn(x, seed),
                    "faiss Kmeans random init": lambda: run_faiss(x, seed, "random"),
                    "faiss Kmeans kmeans++": lambda: run_faiss(x, seed, "kmeans++"),
                }
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    centroids, iterations = fn()
                    runs.setdefault(name, []).append((time.perf_counter() - t0, iterations, inertia64(x, centroids)))
            reference = statistics.mean(r[2] for r in runs["sklearn KMeans lloyd"])
            for name, rs in runs.items():
                inertia = statistics.mean(r[2] for r in rs)
                rows.append({"workload": w["name"], "features": w["source"], "n": int(x.shape[0]),
                             "d": int(x.shape[1]), "method": name,
                             "seconds_min": min(r[0] for r in rs),
                             "seconds_median": statistics.median(r[0] for r in rs),
                             "seconds": [r[0] for r in rs], "iterations": [r[1] for r in rs],
                             "inertia_mean": inertia, "inertia_vs_sklearn_pct": 100 * (inertia / reference - 1),
                             "embed_seconds": w.get("embed_seconds")})
            print(f"done: {w['name']}", file=sys.stderr)
    print(f"| workload | method | time s, min / median of {args.seeds} | iterations | inertia | vs sklearn |")
    print("|---|---|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['workload']} | {r['method']} | {r['seconds_min']:.2f} / {r['seconds_median']:.2f} | "
              f"{', '.join(map(str, r['iterations']))} | {r['inertia_mean']:.4g} | "
              f"{r['inertia_vs_sklearn_pct']:+.2f}% |")
    import sklearn
    meta = {"k": K, "max_iter": MAX_ITER, "tol": TOL, "threads": THREADS, "seeds": args.seeds,
            "versions": {"torch": torch.__version__, "sklearn": sklearn.__version__, "faiss": faiss.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            "note": "the machine is shared, so min wall time is the less disturbed figure; inertia recomputed in float64 with exact nearest-centroid assignment; embed_seconds = one "
                    "forward pass of the workload through ConvNet-3 on the CPU (for the selection cost share)"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
