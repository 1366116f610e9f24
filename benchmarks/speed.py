"""Speed, selection-overhead, memory and evaluation benchmarks of dreamdd's DREAM/IDC loop on the CPU.

Every subcommand writes benchmarks/results/speed-<name>.json with the machine (CPU model, torch version, threads,
load average before/after). Times are the minimum over --repeats runs (the machine may be shared; the minimum is
the least disturbed figure). Nothing here asserts on time.

    .venv/bin/python benchmarks/speed.py floor     [--inner 3] [--repeats 3] [--only-tolerance] [--data-root /work/data]
    .venv/bin/python benchmarks/speed.py selection [--classes 3] [--repeats 2] [--data-root /work/data]
    .venv/bin/python benchmarks/speed.py share     [--inner 5] [--pool-size 1000] [--data-root /work/data]
    .venv/bin/python benchmarks/speed.py memory    [--inner 2] [--data-root /work/data]
    .venv/bin/python benchmarks/speed.py eval      [--epochs 3] [--threads 1] [--precisions fp32 bf16] [--compile]

Shapes are the paper's CIFAR-10 IPC 10 settings (preset cifar10-ipc10): ConvNet-3, width 128, instance norm,
10 classes, real batch 128, min(128, IPC * factor^2) = 40 decoded synthetic images per class, network update on
n_data = 2000 real images in batches of 128, DSA color_crop_cutout in matching, color_crop + CutMix (p 0.5) in
the network update, evaluation: 400 images, batch 64, color_crop_flip_scale_rotate + CutMix, 1000 epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dreamdd import compilation
from dreamdd.augment import SiameseAugment, cutmix, soft_cross_entropy
from dreamdd.methods.gradient import gradient_distance
from dreamdd.experiments import convnet, embed, load_cifar, train_real
from dreamdd.experiments import machine as machine_info
from dreamdd.models import matching_parameters
from dreamdd.precision import autocast

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# The loop cost (match + network update) per inner iteration, dreamdd, quiet machine, 2 threads, measured with
# `dreamdd distill --dataset cifar10 --ipc 10 --iterations 1 --set distill.inner_loop=10 --no-eval`.
LOOP_SECONDS_MEASURED = 8.7
INTERVAL = 10


# ---- common ------------------------------------------------------------------------------------------------
def write_result(name: str, data: dict[str, Any], machine_before: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine_before | {"load_average_after": list(os.getloadavg())},
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    path = out_dir / f"speed-{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def min_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Minimum wall time of fn() over `repeats` calls (after `warmup` untimed calls) and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ---- floor -------------------------------------------------------------------------------------------------
def match_pass(net, real, real_y, syn_param, syn_y, augment: SiameseAugment | None = None, g: torch.Generator | None = None,
               memory_format=torch.contiguous_format) -> tuple[torch.Tensor, torch.Tensor]:
    """One class's IDC matching step, bare: real forward+backward (gradients of conv weights, detached), synthetic
    forward + create_graph backward, gradient distance (mse), its backward into the synthetic images.
    Returns (loss, gradient w.r.t. the synthetic images)."""
    params = matching_parameters(net)
    syn = syn_param
    if augment is not None:
        both = augment(torch.cat([real, syn]), g, shared=True)
        real, syn = both[: real.shape[0]], both[real.shape[0]:]
    real = real.contiguous(memory_format=memory_format)
    syn = syn.contiguous(memory_format=memory_format)
    g_real = [x.detach() for x in torch.autograd.grad(F.cross_entropy(net(real), real_y), params)]
    g_syn = torch.autograd.grad(F.cross_entropy(net(syn), syn_y), params, create_graph=True)
    loss = gradient_distance(g_real, g_syn, "mse")
    (grad,) = torch.autograd.grad(loss, syn_param)
    return loss.detach(), grad


def network_pass(net, optimizer, batches, num_classes: int, augment: SiameseAugment | None, cutmix_prob: float,
                 g: torch.Generator | None, memory_format=torch.contiguous_format) -> float:
    """IDC's network update, bare: for each real batch, (augment + CutMix,) forward, backward, SGD step."""
    loss = 0.0
    for x, y in batches:
        if augment is not None:
            x = augment(x, g, shared=False)
        if cutmix_prob > 0:
            x, t = cutmix(x, y, num_classes, g, prob=cutmix_prob)
        else:
            t = F.one_hot(y, num_classes).float()
        out = soft_cross_entropy(net(x.contiguous(memory_format=memory_format)), t)
        optimizer.zero_grad(set_to_none=True)
        out.backward()
        optimizer.step()
        loss = float(out.detach())
    return loss


def floor_passes(num_classes: int = 10, size: int = 32, width: int = 128, depth: int = 3, batch_real: int = 128,
                 n_syn: int = 40, n_data: int = 2000, net_batch: int = 128, repeats: int = 3,
                 try_compile: bool = False, seed: int = 0) -> dict[str, Any]:
    """Seconds of the bare passes of one IDC inner iteration (all classes' matching, one network update),
    minimum over `repeats`, with and without augmentation, in the default and the channels_last layout (and
    torch.compile of the network update when try_compile). Inputs are random: the arithmetic does not depend
    on the values."""
    g0 = torch.Generator().manual_seed(seed)
    real = [torch.randn(batch_real, 3, size, size, generator=g0) for _ in range(num_classes)]
    syn = [torch.randn(n_syn, 3, size, size, generator=g0).requires_grad_(True) for _ in range(num_classes)]
    ys_real = [torch.full((batch_real,), c, dtype=torch.long) for c in range(num_classes)]
    ys_syn = [torch.full((n_syn,), c, dtype=torch.long) for c in range(num_classes)]
    sizes = [net_batch] * (n_data // net_batch) + ([n_data % net_batch] if n_data % net_batch else [])
    batches = [(torch.randn(n, 3, size, size, generator=g0), torch.randint(num_classes, (n,), generator=g0))
               for n in sizes]
    match_aug, net_aug = SiameseAugment("color_crop_cutout"), SiameseAugment("color_crop")
    result: dict[str, Any] = {"shapes": {"classes": num_classes, "image": [3, size, size], "width": width,
                                         "depth": depth, "batch_real": batch_real, "n_syn": n_syn,
                                         "n_data": n_data, "net_batch": net_batch}, "repeats": repeats}

    def run_match(net, augment, fmt):
        g = torch.Generator().manual_seed(1)
        outs = [match_pass(net, real[c], ys_real[c], syn[c], ys_syn[c], augment, g, fmt)
                for c in range(num_classes)]
        return outs

    def run_network(net, augment, prob, fmt):
        net = net  # the same net keeps training: cost per step does not depend on the weights
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        return network_pass(net, opt, batches, num_classes, augment, prob, torch.Generator().manual_seed(2), fmt)

    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    reference = None
    for name, fmt in layouts.items():
        net = convnet(num_classes, 3, size, width, depth, seed).to(memory_format=fmt)
        t_bare, outs = min_time(lambda: run_match(net, None, fmt), repeats)
        t_aug, _ = min_time(lambda: run_match(net, match_aug, fmt), repeats)
        if reference is None:
            reference = outs
            diff = {"loss_max_rel": 0.0, "image_grad_max_rel": 0.0}
        else:
            diff = {"loss_max_rel": max(float((a[0] - b[0]).abs() / b[0].abs().clamp_min(1e-30))
                                        for a, b in zip(outs, reference)),
                    "image_grad_max_rel": max(float((a[1] - b[1]).abs().max() / b[1].abs().max().clamp_min(1e-30))
                                              for a, b in zip(outs, reference))}
        net_fresh = convnet(num_classes, 3, size, width, depth, seed).to(memory_format=fmt)
        n_bare, _ = min_time(lambda: run_network(net_fresh, None, 0.0, fmt), repeats)
        n_aug, _ = min_time(lambda: run_network(net_fresh, net_aug, 0.5, fmt), repeats)
        result[name] = {"match_bare": t_bare, "match_with_dsa": t_aug, "network_bare": n_bare,
                        "network_with_dsa_cutmix": n_aug, "floor_bare": t_bare + n_bare,
                        "floor_with_augment": t_aug + n_aug, "difference_vs_contiguous": diff}
    # augmentation alone (what "with_dsa" adds), for the record
    g = torch.Generator().manual_seed(3)
    t_aug_m, _ = min_time(lambda: [match_aug(torch.cat([real[c], syn[c].detach()]), g, shared=True)
                                   for c in range(num_classes)], repeats)
    t_aug_n, _ = min_time(lambda: [cutmix(net_aug(x, g), y, num_classes, g, prob=0.5) for x, y in batches], repeats)
    result["augment_only"] = {"match_dsa": t_aug_m, "network_dsa_cutmix": t_aug_n}
    if try_compile:
        result["compile"] = try_compiled_network(num_classes, size, width, depth, batches, repeats, seed)
    return result


def try_compiled_network(num_classes, size, width, depth, batches, repeats, seed) -> dict[str, Any]:
    """torch.compile of the network update (forward + backward); double backward (matching) is not supported
    by compiled autograd graphs, so matching is tried only to record the error."""
    out: dict[str, Any] = {}
    try:
        net = convnet(num_classes, 3, size, width, depth, seed)
        compiled = torch.compile(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        t0 = time.perf_counter()
        network_pass(compiled, opt, batches[:1], num_classes, None, 0.0, None)
        out["compile_seconds"] = time.perf_counter() - t0
        t, _ = min_time(lambda: network_pass(compiled, opt, batches, num_classes, None, 0.0, None), repeats, 0)
        out["network_bare"] = t
        # same arithmetic? one step from the same weights, compiled vs eager
        a, b = convnet(num_classes, 3, size, width, depth, seed), convnet(num_classes, 3, size, width, depth, seed)
        x, y = batches[0]
        la = F.cross_entropy(torch.compile(a)(x), y)
        lb = F.cross_entropy(b(x), y)
        la.backward()
        lb.backward()
        out["loss_rel_diff"] = float((la - lb).detach().abs() / lb.detach().abs())
        ga = torch.cat([p.grad.flatten() for p in a.parameters()])
        gb = torch.cat([q.grad.flatten() for q in b.parameters()])
        out["grad_max_err_over_max"] = float((ga - gb).abs().max() / gb.abs().max())  # conv biases before a
        # norm have ~0 gradients, so per-tensor relative errors would be meaningless
    except Exception as error:  # noqa: BLE001 -- record why compilation is not usable here
        out["network_error"] = f"{type(error).__name__}: {str(error)[:300]}"
    try:
        net = convnet(num_classes, 3, size, width, depth, seed)
        compiled = torch.compile(net)
        real = torch.randn(8, 3, size, size)
        syn = torch.randn(4, 3, size, size, requires_grad=True)
        match_pass(compiled, real, torch.zeros(8, dtype=torch.long), syn, torch.zeros(4, dtype=torch.long))
        out["match"] = "ran"
    except Exception as error:  # noqa: BLE001
        out["match_error"] = f"{type(error).__name__}: {str(error)[:300]}"
    return out


def layout_tolerance(size: int = 32, width: int = 128, depth: int = 3, batch_real: int = 128, n_syn: int = 40,
                     seed: int = 0) -> dict[str, Any]:
    """Is channels_last 'the same arithmetic within float tolerance'? One class's matching loss and image
    gradient in float32 (contiguous, channels_last) against a float64 reference of the same computation."""
    g0 = torch.Generator().manual_seed(seed)
    real = torch.randn(batch_real, 3, size, size, generator=g0)
    syn = torch.randn(n_syn, 3, size, size, generator=g0)
    yr, ys = torch.zeros(batch_real, dtype=torch.long), torch.zeros(n_syn, dtype=torch.long)
    out = {}
    ref_net = convnet(10, 3, size, width, depth, seed).double()
    ref_loss, ref_grad = match_pass(ref_net, real.double(), yr, syn.double().requires_grad_(True), ys)
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net = convnet(10, 3, size, width, depth, seed).to(memory_format=fmt)
        loss, grad = match_pass(net, real, yr, syn.clone().requires_grad_(True), ys, memory_format=fmt)
        out[name] = {"loss_rel_err_vs_fp64": float((loss.double() - ref_loss).abs() / ref_loss.abs()),
                     "image_grad_rel_err_vs_fp64": float((grad.double() - ref_grad).norm() / ref_grad.norm()),
                     "image_grad_max_err_over_max_vs_fp64": float((grad.double() - ref_grad).abs().max()
                                                                  / ref_grad.abs().max())}
    return out


def measured_loop(data_root: str, inner: int, selector: str = "random", extra: dict | None = None) -> dict[str, Any]:
    """dreamdd's own loop, CIFAR-10 IPC 10 paper preset, `inner` inner iterations of one outer iteration
    (selector random and init real isolate matching and network update from selection); its timings."""
    from dreamdd import api
    overrides = {"distill": {"inner_loop": inner, "checkpoint_every": 1000}} | (extra or {})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = api.distill("cifar10", 10, selector=selector, init="real", iterations=1, out=tmp,
                          overrides=overrides, data_root=data_root, evaluate=False, quiet=True)
        wall = time.perf_counter() - t0
    t = run.summary["timings"]
    n = t["inner_iterations"]
    return {"inner_iterations": n, "match_per_inner": t["match"] / n, "network_per_inner": t["network"] / n,
            "select_per_inner": t["select"] / n, "seconds_per_inner_iteration": t["seconds_per_inner_iteration"],
            "wall_seconds": wall, "timings": t}


def cmd_floor(args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    if args.only_tolerance:
        return {"layout_tolerance": layout_tolerance()}
    result = floor_passes(repeats=args.repeats, try_compile=not args.no_compile)
    result["layout_tolerance"] = layout_tolerance()
    if not args.no_loop:
        loop = measured_loop(args.data_root, args.inner)
        result["dreamdd_loop"] = loop
        c = result["contiguous"]
        result["actual_vs_floor"] = {
            "match_actual": loop["match_per_inner"], "match_floor_with_dsa": c["match_with_dsa"],
            "match_ratio": loop["match_per_inner"] / c["match_with_dsa"],
            "network_actual": loop["network_per_inner"], "network_floor_with_augment": c["network_with_dsa_cutmix"],
            "network_ratio": loop["network_per_inner"] / c["network_with_dsa_cutmix"]}
    return result


# ---- selection ---------------------------------------------------------------------------------------------
EMBED_VARIANTS = {
    "fp32 chunk 512 (paper-faithful, dreamdd default)": dict(chunk=512),
    "fp32 chunk 256": dict(chunk=256),
    "fp32 chunk 1024": dict(chunk=1024),
    "fp32 chunk 5000 (one batch, as the authors)": dict(chunk=5000),
    "channels_last input, chunk 512": dict(chunk=512, memory_format=torch.channels_last),
    "bf16 autocast, chunk 512": dict(chunk=512, dtype=torch.bfloat16),
    "bf16 autocast + channels_last, chunk 512": dict(chunk=512, dtype=torch.bfloat16,
                                                     memory_format=torch.channels_last),
}

KMEANS_VARIANTS = {
    "paper: whole class, kmeans++, tol 1e-4, max_iter 100": dict(pool=None, max_iter=100, tol=1e-4),
    "whole class, max_iter 30": dict(pool=None, max_iter=30, tol=1e-4),
    "whole class, max_iter 10": dict(pool=None, max_iter=10, tol=1e-4),
    "whole class, tol 1e-3": dict(pool=None, max_iter=100, tol=1e-3),
    "pool 2000": dict(pool=2000, max_iter=100, tol=1e-4),
    "pool 1000": dict(pool=1000, max_iter=100, tol=1e-4),
}


def selection_share(round_seconds: float, loop_seconds: float = LOOP_SECONDS_MEASURED,
                    interval: int = INTERVAL) -> float:
    """Share of wall time spent selecting when one round runs every `interval` inner iterations."""
    return round_seconds / (round_seconds + interval * loop_seconds)


def kmeans_round(features: torch.Tensor, n: int, seed: int, max_iter: int, tol: float,
                 init_centroids: torch.Tensor | None = None) -> dict[str, Any]:
    from dreamdd.selection.kmeans import kmeans, nearest_to_centroids
    from dreamdd.selection.representative import cluster_quotas
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        r = kmeans(features, n, g, max_iter=max_iter, tol=tol, init_centroids=init_centroids)
        positions = nearest_to_centroids(features, r.centroids, cluster_quotas(r.assignments, n, n))
    return {"iterations": r.iterations, "inertia": r.inertia, "positions": positions, "centroids": r.centroids}


def cmd_selection(args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    data = load_cifar(args.data_root)
    net = convnet(seed=args.seed)
    images_fn = lambda idx: data.info.normalize(data.train.batch(idx, "cpu"))  # noqa: E731
    classes = list(range(args.classes))
    per_class: dict[str, list[float]] = {}
    features = {}
    reference = {}
    for c in classes:
        idx = data.train.class_indices(c)
        for name, v in EMBED_VARIANTS.items():
            t, f = min_time(lambda: embed(net, images_fn, idx, v["chunk"], v.get("memory_format",
                                          torch.contiguous_format), v.get("dtype")), args.repeats, warmup=0)
            per_class.setdefault(f"embed | {name}", []).append(t)
            if name.startswith("fp32 chunk 512"):
                features[c] = f
            else:
                ref = features[c]
                reference.setdefault(name, []).append(float((f - ref).abs().max() / ref.abs().max()))
    embed_rows = {name: {"seconds_per_class": min(v) if False else sum(v) / len(v),
                         "max_rel_diff_vs_fp32": max(reference.get(name.split(" | ", 1)[1], [0.0]))}
                  for name, v in per_class.items()}
    # k-means variants on the paper-faithful features
    g = torch.Generator().manual_seed(args.seed)
    kmeans_rows = {}
    for name, v in KMEANS_VARIANTS.items():
        secs, iters = [], []
        for c in classes:
            f = features[c]
            if v["pool"] is not None:
                f = f[torch.randperm(f.shape[0], generator=g)[: v["pool"]]]
            t, r = min_time(lambda: kmeans_round(f, 128, args.seed + c, v["max_iter"], v["tol"]), args.repeats, 0)
            secs.append(t)
            iters.append(r["iterations"])
        kmeans_rows[name] = {"seconds_per_class": sum(secs) / len(secs), "lloyd_iterations_mean": sum(iters) / len(iters),
                             "pool": v["pool"]}
    # warm start: the next round's features come from the network after 10 inner iterations of updates
    warm = {}
    if not args.no_warm:
        first = {c: kmeans_round(features[c], 128, args.seed + c, 100, 1e-4) for c in classes[:2]}
        train_real(net, data, INTERVAL * 2000, args.seed)
        rows = []
        for c in classes[:2]:
            f2 = embed(net, images_fn, data.train.class_indices(c), 512)
            cold_t, cold = min_time(lambda: kmeans_round(f2, 128, args.seed + c, 100, 1e-4), args.repeats, 0)
            # warm: previous centroids re-expressed as the new features of the previous representatives
            init = f2[first[c]["positions"]]
            warm_t, w = min_time(lambda: kmeans_round(f2, 128, args.seed + c, 100, 1e-4, init), args.repeats, 0)
            init_old = first[c]["centroids"]
            rows.append({"class": c, "cold_seconds": cold_t, "cold_iterations": cold["iterations"],
                         "cold_inertia": cold["inertia"], "warm_from_previous_picks_seconds": warm_t,
                         "warm_iterations": w["iterations"], "warm_inertia": w["inertia"],
                         "old_centroids_in_new_space_note": "old centroids live in the old feature space; "
                         "the previous picks' new features are used as the warm start",
                         "old_centroid_shape": list(init_old.shape)})
        warm = {"rows": rows, "between_rounds": f"network trained on {INTERVAL} x 2000 real images"}
    # compose rounds: 10 classes x (embed + kmeans); a pool embeds pool / class_size of the class
    class_size = data.train.class_size(classes[0])
    paper_embed = embed_rows["embed | fp32 chunk 512 (paper-faithful, dreamdd default)"]["seconds_per_class"]
    best_embed_name = min(embed_rows, key=lambda k: embed_rows[k]["seconds_per_class"])
    rounds = {}
    for kname, krow in kmeans_rows.items():
        for ename, erow in embed_rows.items():
            frac = 1.0 if krow["pool"] is None else min(1.0, krow["pool"] / class_size)
            per_class_s = erow["seconds_per_class"] * frac + krow["seconds_per_class"]
            round_s = 10 * per_class_s
            rounds[f"{kname} || {ename.split(' | ', 1)[1]}"] = {
                "round_seconds_10_classes": round_s, "selection_share_at_interval_10": selection_share(round_s),
                "seconds_per_inner_iteration_amortized": LOOP_SECONDS_MEASURED + round_s / INTERVAL}
    return {"classes_measured": classes, "repeats": args.repeats, "loop_seconds_assumed": LOOP_SECONDS_MEASURED,
            "network": "ConvNet-3 at its fresh (seeded) initialisation, as at the start of an outer iteration",
            "embed": embed_rows, "kmeans": kmeans_rows, "warm_start": warm, "rounds": rounds,
            "paper_embed_seconds_per_class": paper_embed, "fastest_embed": best_embed_name}


def cmd_share(args) -> dict[str, Any]:
    """Selection share measured in dreamdd's own loop (same process, same load for loop and selection): one outer
    iteration of `--inner` inner iterations with the dream selector (pool_size as given, 0 = whole class) and
    init real; one selection round per class happens every 10 inner iterations, so the share at interval 10 is
    round / (round + 10 x (match + network per inner iteration))."""
    torch.set_num_threads(args.threads)
    extra = {"select": {"pool_size": args.pool_size or None}}
    loop = measured_loop(args.data_root, args.inner, selector="dream", extra=extra)
    t = loop["timings"]
    rounds = max(1, -(-args.inner // INTERVAL))
    round_s = t["select"] / rounds
    per_inner = loop["match_per_inner"] + loop["network_per_inner"]
    return {"pool_size": args.pool_size or None, "loop": loop, "round_seconds": round_s,
            "loop_seconds_per_inner": per_inner,
            "selection_share_at_interval_10": round_s / (round_s + INTERVAL * per_inner),
            "seconds_per_inner_iteration_amortized": per_inner + round_s / INTERVAL}


# ---- memory ------------------------------------------------------------------------------------------------
def peak_rss_of(cmd: list[str]) -> dict[str, Any]:
    """Run cmd; its peak resident set (KiB from getrusage of the child), exit code and wall time."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"returncode": proc.returncode, "peak_rss_kib": after, "children_max_before_kib": before,
            "wall_seconds": time.perf_counter() - t0, "stderr_tail": proc.stderr[-800:]}


def cmd_memory(args) -> dict[str, Any]:
    exe = str(Path(sys.executable).with_name("dreamdd"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [exe, "distill", "--dataset", "cifar10", "--ipc", "10", "--data-root", args.data_root,
               "--iterations", "1", "--set", f"distill.inner_loop={args.inner}", "--no-eval", "--out", tmp,
               "--quiet"]
        r = peak_rss_of(cmd)
        summaries = list(Path(tmp).rglob("summary.json"))
        summary = json.loads(summaries[0].read_text()) if summaries else None
    data = load_cifar(args.data_root)
    uint8_bytes = sum(b.images.numel() * b.images.element_size() for b in (data.train, data.val, data.test))
    peak_gb = r["peak_rss_kib"] * 1024 / 1e9
    return {"command": " ".join(cmd), **r, "peak_rss_gb": peak_gb, "target_gb": 3.0, "met": peak_gb < 3.0,
            "uint8_images_bytes_train_val_test": uint8_bytes,
            "train_images_dtype": str(data.train.images.dtype),
            "timings": summary.get("timings") if summary else None}


# ---- eval --------------------------------------------------------------------------------------------------
def eval_breakdown(n_images: int = 400, batch: int = 64, epochs: int = 3, val_images: int = 5000,
                   size: int = 32, width: int = 128, num_classes: int = 10, full_epochs: int = 1000,
                   val_every: int = 50, seed: int = 0, precision: str = "fp32") -> dict[str, Any]:
    """Seconds per epoch of the evaluation protocol, split into augmentation (DSA color_crop_flip_scale_rotate
    + CutMix), forward/backward/step, and the validation pass; extrapolated to `full_epochs`. The forward and the
    validation pass run in `precision` (fp32, bf16) as dreamdd's evaluation runs them (training.train_step)."""
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, 3, size, size, generator=g)
    y = torch.arange(n_images) % num_classes
    val = torch.randn(val_images, 3, size, size, generator=g)
    net = convnet(num_classes, 3, size, width, 3, seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    aug = SiameseAugment("color_crop_flip_scale_rotate")
    t_aug = t_step = 0.0
    per_epoch = []
    for epoch in range(epochs + 1):   # epoch 0 is warm-up
        a = s = 0.0
        t_epoch = time.perf_counter()
        order = torch.randperm(n_images, generator=g)
        for start in range(0, n_images, batch):
            idx = order[start:start + batch]
            t0 = time.perf_counter()
            xb, tb = cutmix(aug(x[idx], g), y[idx], num_classes, g, prob=0.5)
            t1 = time.perf_counter()
            net.train()
            with autocast(precision, cpu):
                logits = compilation.forward(net)(xb)
            loss = soft_cross_entropy(logits.float(), tb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())
            t2 = time.perf_counter()
            a += t1 - t0
            s += t2 - t1
        if epoch:
            t_aug += a
            t_step += s
            per_epoch.append(time.perf_counter() - t_epoch)
    net.eval()
    with torch.no_grad(), autocast(precision, cpu):
        compilation.forward(net)(val[:1000])          # warm-up (compiles the evaluation-mode graph when compiling)
        t0 = time.perf_counter()
        for start in range(0, val_images, 1000):
            compilation.forward(net)(val[start:start + 1000]).argmax(1)
        t_val = time.perf_counter() - t0
    epoch_s, epoch_mean = min(per_epoch), sum(per_epoch) / epochs
    aug_e, step_e = t_aug / epochs, t_step / epochs
    other_e = max(0.0, epoch_mean - aug_e - step_e)
    n_val = full_epochs // val_every + (0 if full_epochs % val_every == 0 else 1)
    total = full_epochs * epoch_s + n_val * t_val
    total_mean = full_epochs * (aug_e + step_e + other_e) + n_val * t_val
    return {"epochs_measured": epochs, "epoch_seconds_min": epoch_s, "epoch_seconds_mean": epoch_mean,
            "augment_seconds_per_epoch": aug_e, "step_seconds_per_epoch": step_e, "other_seconds_per_epoch": other_e,
            "validation_pass_seconds": t_val, "validation_passes": n_val,
            "extrapolated_seconds": total, "extrapolated_seconds_from_mean_epoch": total_mean,
            "share": {"augment": full_epochs * aug_e / total_mean, "forward_backward_step": full_epochs * step_e /
                      total_mean, "other": full_epochs * other_e / total_mean,
                      "validation": n_val * t_val / total_mean},
            "shapes": {"images": n_images, "batch": batch, "val_images": val_images, "epochs": full_epochs,
                       "val_every": val_every}, "precision": precision}


def cmd_eval(args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    with compilation.mode(args.compile):
        runs = {precision: eval_breakdown(epochs=args.epochs, precision=precision) for precision in args.precisions}
    if len(runs) == 1:
        return next(iter(runs.values()))
    fp32 = runs.get("fp32")
    ratios = {p: r["extrapolated_seconds"] / fp32["extrapolated_seconds"] for p, r in runs.items()} if fp32 else {}
    return {"precisions": runs, "ratio_to_fp32": ratios}


# ---- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("floor", "selection", "share", "memory", "eval"):
        s = sub.add_parser(name)
        s.add_argument("--data-root", default="/work/data")
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--repeats", type=int, default=3 if name == "floor" else 2)
        s.add_argument("--out-dir", default=str(RESULTS))
        if name == "floor":
            s.add_argument("--inner", type=int, default=3, help="inner iterations of the measured dreamdd loop")
            s.add_argument("--no-compile", action="store_true")
            s.add_argument("--no-loop", action="store_true", help="skip the measured dreamdd loop")
            s.add_argument("--only-tolerance", action="store_true",
                           help="only the channels_last vs float64 tolerance check (writes speed-floor-tolerance)")
        if name == "selection":
            s.add_argument("--classes", type=int, default=3, help="classes measured (rounds scale to 10)")
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--no-warm", action="store_true")
        if name == "memory":
            s.add_argument("--inner", type=int, default=2)
        if name == "share":
            s.add_argument("--inner", type=int, default=5)
            s.add_argument("--pool-size", type=int, default=1000, help="0 = the whole class (paper)")
        if name == "eval":
            s.add_argument("--epochs", type=int, default=3)
            s.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                           help="measured one after the other in this process (ratios to fp32 when both)")
            s.add_argument("--compile", action="store_true", help="the forwards compiled (dreamdd.compilation); "
                                                                   "the warm-up epoch compiles")
    args = p.parse_args(argv)
    before = machine_info()
    commands = {"floor": cmd_floor, "selection": cmd_selection, "share": cmd_share, "memory": cmd_memory,
                "eval": cmd_eval}
    result = commands[args.command](args)
    name = args.command + ("-tolerance" if getattr(args, "only_tolerance", False) else "")
    if args.command == "share":
        name += f"-pool{args.pool_size or 'class'}"
    if args.command == "eval" and args.precisions != ["fp32"]:
        name += "-" + "-".join(args.precisions)
    if args.command == "eval" and args.compile:
        name += "-compiled"
    path = write_result(name, {"args": {k: v for k, v in vars(args).items()}, "result": result}, before,
                        Path(args.out_dir))
    print(json.dumps(result, indent=1, default=str)[:6000])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
