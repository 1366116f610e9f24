"""`dreamdd plan`: before a run, its memory (data, synthetic set, networks, activations, evaluation) and its
compute (one inner iteration, one outer iteration, the whole run, the evaluation), the compute calibrated from a
few timed steps of the run's own network on this machine. Estimates, not measurements: the aim is to know
whether a run fits and roughly how long it takes."""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from .config import Config, model_options
from .data import registry
from .data import store as stores
from .devices import resolve_device
from .training import build_network

# (train, test) images of the registered datasets as published (used when no prepared store says otherwise)
NOMINAL = {"digits": (1347, 450), "mnist": (60000, 10000), "fashion-mnist": (60000, 10000),
           "cifar10": (50000, 10000), "cifar100": (50000, 10000), "svhn": (73257, 26032),
           "tiny-imagenet": (100000, 10000), "imagenet-1k": (1281167, 50000)}
IMAGENET_PER_CLASS = (1300, 50)  # ImageNet-1K's usual train / val images per class (a subset's nominal counts)
GRAPH_FACTOR = 3.0  # a matching step keeps the synthetic batch's graph and backpropagates through a gradient
GB = 1024 ** 3


@dataclass
class Plan:
    dataset: str
    facts: dict[str, Any]
    memory: dict[str, float] = field(default_factory=dict)  # bytes
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "facts": self.facts, "memory_bytes": self.memory,
                "seconds": self.seconds, "notes": self.notes}

    def lines(self) -> list[str]:
        f = self.facts
        out = [f"plan for {self.dataset}: {f['classes']} classes of {f['channels']}x{f['image_size']}x"
               f"{f['image_size']}, {f['train']} train / {f['test']} test images ({f['counts_from']}); IPC "
               f"{f['ipc']}, factor {f['factor']}, {f['model']} ({f['parameters'] / 1e6:.2f} M parameters), "
               f"device {f['device']}", "memory:"]
        out += [f"  {k:<34} {_size(v)}" for k, v in self.memory.items()]
        out.append(f"compute (calibrated: {f['seconds_per_image']*1e3:.2f} ms per image forward+backward, "
                   f"{f['calibration_batch']} images per timed step):")
        out += [f"  {k:<34} {_duration(v)}" for k, v in self.seconds.items()]
        out += [f"note: {n}" for n in self.notes]
        return out


def _size(n: float) -> str:
    for unit, scale in (("GB", GB), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def _counts(config: Config, size: tuple[int, int]) -> tuple[Any, int, int, str, bool]:
    """The dataset's description, its train / test image counts, where those come from and whether it is stored."""
    name = config.data.dataset
    spec = registry._spec(name)
    if spec is None:  # a folder or an .npz of the user's: small enough to read
        data = registry.load(name, root=config.data.root, val_size=0, image_size=config.data.image_size)
        return data.info, len(data.train), len(data.test), "read from the files", False
    info = spec.info
    if spec.layout is None:
        train, test = NOMINAL[spec.name]
        return info, train, test, "published counts", False
    store = stores.read_index(stores.store_dir(Path(config.data.root).expanduser(), spec.name, size))
    if store is not None:
        counts = {s: sum(store["splits"][s]["counts"]) for s in stores.SPLITS}
        info = dataclasses.replace(info, num_classes=len(store["class_ids"]))
        return info, counts["train"], counts["test"], "the prepared store's index", True
    if spec.name in NOMINAL:
        train, test = NOMINAL[spec.name]
    else:
        train, test = (info.num_classes * n for n in IMAGENET_PER_CLASS)
    return info, train, test, "published counts (no prepared store yet)", True


def _activations_per_image(net: torch.nn.Module, channels: int, size: tuple[int, int],
                           device: torch.device) -> int:
    """Bytes of float32 outputs of every leaf module for one image: what a forward pass keeps for backward."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()
    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, *size, device=device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _calibrate(net: torch.nn.Module, channels: int, size: tuple[int, int], classes: int, device: torch.device,
               batch: int, steps: int) -> float:
    """Seconds per image of a forward + backward pass (SGD step included), from `steps` timed steps."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    x = torch.rand(batch, channels, *size, device=device)
    y = torch.randint(classes, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / (steps * batch)


def plan(config: Config, calibration_batch: int = 16, calibration_steps: int = 2) -> Plan:
    """Memory and compute of the run `config` describes (see the module's docstring)."""
    side = config.data.image_size
    spec = registry._spec(config.data.dataset)
    default = spec.info.image_size if spec is not None else None
    size = (side, side) if side else default
    info, n_train, n_test, counts_from, stored = _counts(config, size or (0, 0))
    size = size or tuple(info.image_size)
    k, c = info.num_classes, info.channels
    ipc, f = config.synth.ipc, config.synth.factor
    device = resolve_device(config.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    options = model_options(config)
    net = build_network(config.model.name, k, c, size, options, config.seed, "plan", device=device)
    params = sum(p.numel() for p in net.parameters())
    act = _activations_per_image(net, c, size, device)
    per_image = _calibrate(net, c, size, k, device, calibration_batch, calibration_steps)
    pixels = c * size[0] * size[1]
    val = registry._val_total(config.data.val_size, n_train)
    class_size = math.ceil(n_train / k)
    n_syn = min(config.synth.max_per_class, ipc * f * f)
    p = Plan(info.name, {"classes": k, "channels": c, "image_size": size[0], "train": n_train, "test": n_test,
                         "validation": val, "counts_from": counts_from, "ipc": ipc, "factor": f,
                         "model": config.model.name, "parameters": params, "device": str(device),
                         "seconds_per_image": per_image, "calibration_batch": calibration_batch})
    data_bytes = (n_train + n_test) * pixels
    sizes = _Sizes(k, pixels, ipc * f * f * k, n_syn, class_size, val, n_test, params, act, per_image)
    _add_memory(p, config, sizes, stored, data_bytes, lambda: _feature_size(net, c, size, device))
    _add_seconds(p, config, sizes, device)
    _fits(p, config, stored, data_bytes)
    return p


class _Sizes(NamedTuple):
    """What the estimates multiply: classes, pixels of an image, decoded synthetic images, synthetic images of a
    class in a matching step, a class's training images, validation and test images, network parameters,
    activation floats per image and measured seconds per image."""
    classes: int
    pixels: int
    decoded: int
    n_syn: int
    class_size: int
    val: int
    n_test: int
    params: int
    act: float
    per_image: float


def _add_memory(p: Plan, config: Config, z: _Sizes, stored: bool, data_bytes: int,
                feature: Callable[[], int]) -> None:
    """The bytes of the data, the synthetic set, the network, a selection round, a step's activations, the
    evaluation, and the peak (the largest step on top of what stays resident)."""
    k, pixels, ipc = z.classes, z.pixels, config.synth.ipc
    p.memory["runtime (torch and libraries, measured)"] = _current_rss()
    if stored:
        p.memory["data on disk (prepared store)"] = data_bytes
        p.memory["data in memory (one class, read)"] = z.class_size * pixels
    else:
        p.memory["data in memory (uint8)"] = data_bytes
    p.memory["synthetic set + gradient + momentum"] = 3 * k * ipc * pixels * 4
    p.memory["network + gradient + momentum"] = 3 * z.params * 4
    feature_size = feature()          # measured here, after the runtime's memory, as it always was
    if config.select.selector in ("dream", "representative"):
        pool = min(z.class_size, config.select.pool_size or z.class_size)
        p.memory["DREAM clustering (one class)"] = pool * (feature_size + pixels) * 4
    p.memory["activations of a matching step"] = z.act * (config.match.batch_real + GRAPH_FACTOR * z.n_syn)
    p.memory["activations of a network step"] = z.act * config.distill.net_batch
    p.memory["evaluation (decoded set, 2 networks)"] = z.decoded * pixels * 4 + 4 * z.params * 4 + \
        z.act * config.eval.batch
    resident = [v for key, v in p.memory.items()
                if key.startswith(("runtime", "data in memory", "synthetic", "network +"))]
    steps = [v for key, v in p.memory.items() if key.startswith(("DREAM", "activations"))]
    p.memory["peak (largest step + resident)"] = sum(resident) + max(steps)


def _add_seconds(p: Plan, config: Config, z: _Sizes, device: torch.device) -> None:
    """The seconds of an inner iteration by part, of the distillation and of the evaluation."""
    k, per_image = z.classes, z.per_image
    matching = k * (config.match.batch_real + GRAPH_FACTOR * z.n_syn) * per_image
    train_net = config.distill.n_data * per_image
    clustering = 0.0
    if config.select.selector in ("dream", "representative"):
        clustering = k * min(z.class_size, config.select.pool_size or z.class_size) * per_image / 3 / \
            config.select.interval
    image_steps = k * _image_step_seconds(k * config.synth.ipc * z.pixels, device)
    inner = matching + train_net + clustering + image_steps
    p.seconds["matching (per inner iteration)"] = matching
    p.seconds["image steps (per inner iteration)"] = image_steps
    p.seconds["network update (per inner iteration)"] = train_net
    p.seconds["selection (per inner iteration)"] = clustering
    p.seconds["one inner iteration"] = inner
    p.seconds["one outer iteration"] = inner * config.distill.inner_loop
    p.seconds[f"distillation ({config.distill.iterations} outer)"] = inner * config.distill.inner_loop * \
        config.distill.iterations
    epochs = config.eval.epochs
    passes = epochs // max(1, config.eval.val_every)
    one_net = epochs * z.decoded * per_image + passes * z.val * per_image / 3 + z.n_test * per_image / 3
    p.seconds[f"evaluation ({config.eval.repeats} x {epochs} epochs)"] = one_net * config.eval.repeats


def _current_rss() -> float:
    """This process's resident memory now (torch imported, one small network built): a run's floor."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        import resource
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _image_step_seconds(numel: int, device: torch.device) -> float:
    """One per-class image step: the synthetic set's whole gradient filled and one SGD-with-momentum step over
    it (the loop steps one optimizer over every image once per class, as IDC's code does)."""
    images = torch.zeros(numel, device=device, requires_grad=True)
    optimizer = torch.optim.SGD([images], lr=0.0, momentum=0.5)

    def step():
        images.grad = torch.zeros_like(images)
        optimizer.step()
    step()
    started = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _feature_size(net: torch.nn.Module, channels: int, size: tuple[int, int], device: torch.device) -> int:
    embed = getattr(net, "embed", None)
    if embed is None:
        return 0
    with torch.no_grad():
        return int(embed(torch.zeros(1, channels, *size, device=device)).numel())


def _fits(p: Plan, config: Config, stored: bool, data_bytes: int) -> None:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    peak = p.memory["peak (largest step + resident)"]
    if ram:
        verdict = "fits" if peak < 0.8 * ram else "does NOT fit"
        p.notes.append(f"peak {_size(peak)} {verdict} in this machine's {_size(ram)} of memory")
    if stored:
        root = Path(config.data.root).expanduser()
        while not root.exists() and root != root.parent:
            root = root.parent
        free = shutil.disk_usage(root).free
        p.notes.append(f"the prepared store needs {_size(data_bytes)} on disk ({_size(free)} free under {root}); "
                       f"`dreamdd prepare` builds it once")
    p.notes.append("activations and time are estimates from the network's layer outputs and a few timed "
                   "forward+backward steps; a matching step is counted as 3 passes over the synthetic batch")
