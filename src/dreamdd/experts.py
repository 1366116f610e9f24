"""MTT's expert trajectories (Cazenavette et al., CVPR 2022): networks trained on the real training split with
SGD (lr_teacher, DSA per sample, no CutMix), their parameters snapshotted every epoch.

On disk, a folder: experts.json (the manifest) and one expert_NNN.safetensors per expert holding 'trajectory',
a float32 (epochs + 1, num_params) tensor: row e is the flattened parameter vector after e epochs (row 0: the
initialisation). Rows are read one at a time, so memory does not grow with the number of experts or epochs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from .config import Config, model_options
from .errors import DreamddError
from .io.names import EXPERTS_MANIFEST as MANIFEST
from .io.names import REQUEST
from .io.run import RunSession
from .io.rundir import atomic_write, read_json, sha256_file, write_json
from .seeding import generator
from .training import build_network, make_augment, sgd, train_step
from .zca import ZCA, Preprocessed, fit_zca

FORMAT = "dreamdd-experts"


def flat_parameters(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float().cpu()


def model_record(config: Config) -> dict[str, Any]:
    return {"name": config.model.name, **model_options(config)}


def zca_for(config: Config, data, device: torch.device) -> ZCA | None:
    """The ZCA layer fitted on the training split (normalized images), when mtt.zca is on."""
    if not config.mtt.zca:
        return None
    bank, info = data.train, data.info
    mean, matrix = fit_zca(lambda idx: info.normalize(bank.batch(idx, device)), len(bank), config.mtt.zca_eps)
    return ZCA(mean, matrix).to(device)


PROGRESS_KEYS = ("files", "sha256", "num_params", "seconds", "finished")   # what training adds to a manifest


def _finished_experts(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest a stopped training left in `out`, if it was for the same settings, keeping only experts whose
    file is intact; else a fresh one. A folder holding anything else is refused."""
    path = out / MANIFEST
    if not path.exists():
        return manifest
    old = read_json(path, fix=f"delete {out} and train the experts again")
    if not isinstance(old, dict) or {k: v for k, v in old.items() if k not in PROGRESS_KEYS} != \
            {k: v for k, v in manifest.items() if k not in PROGRESS_KEYS}:
        raise DreamddError(f"the experts in {out} were trained with other settings; choose another --out")
    kept = dict(manifest, sha256={})
    for name in old.get("files", []):
        recorded = (old.get("sha256") or {}).get(name)
        if recorded is None or not (out / name).exists() or sha256_file(out / name) != recorded:
            break
        kept["files"].append(name)
        kept["sha256"][name] = recorded
        kept["num_params"] = old.get("num_params")
    kept["seconds"] = float(old.get("seconds", 0.0)) if kept["files"] else 0.0
    return kept


def train_experts(config: Config, data, out: str | os.PathLike, experts: int, epochs: int,
                  device: torch.device, quiet: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """Train `experts` networks for `epochs` epochs each on data.train; write their trajectories into `out`.
    Experts already written there by a stopped training with the same settings (and intact) are kept: each
    expert depends only on (seed, its index), so the result is the same as one uninterrupted training."""
    if experts < 1 or epochs < 1:
        raise DreamddError("experts need --experts >= 1 and --epochs >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda message: None)
    info, bank, m = data.info, data.train, config.mtt
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": 2, "dataset": info.to_dict(),
        "split": {"dataset": config.data.dataset, "root": config.data.root, "val_size": config.data.val_size,
                  "seed": config.seed},
        "model": model_record(config), "zca": bool(m.zca), "zca_eps": m.zca_eps, "epochs": epochs,
        "lr_teacher": m.lr_teacher, "batch": m.expert_batch, "augment": m.expert_augment, "augment_mode": m.expert_augment_mode, "seed": config.seed,
        "experts": experts, "files": [], "sha256": {}, "num_params": None}
    manifest = _finished_experts(out, manifest)
    done = len(manifest["files"])
    zca = zca_for(config, data, device)
    augment = make_augment(m.expert_augment, m.expert_augment_mode)
    bar = tqdm(total=experts * epochs, initial=done * epochs, desc="experts", unit="epoch", disable=quiet,
               dynamic_ncols=True)
    started = time.perf_counter() - manifest.pop("seconds", 0.0)
    for i in range(done, experts):
        net = build_network(config.model.name, info.num_classes, info.channels, info.image_size,
                            model_options(config), config.seed, "expert", i, device=device)
        model = Preprocessed(zca, net) if zca is not None else net
        optimizer = sgd(net, m.lr_teacher, m.expert_momentum, m.expert_weight_decay)
        g = generator(config.seed, "expert", i)
        trajectory = [flat_parameters(net)]
        for _ in range(epochs):
            order = torch.randperm(len(bank), generator=g)
            for start in range(0, len(bank), m.expert_batch):
                idx = order[start:start + m.expert_batch]
                train_step(model, optimizer, info.normalize(bank.batch(idx, device)), bank.labels[idx].to(device),
                           info.num_classes, g, augment, 0.0)
            trajectory.append(flat_parameters(net))
            bar.update(1)
        name = f"expert_{i:03d}.safetensors"
        stacked = torch.stack(trajectory).contiguous()
        atomic_write(out / name, lambda tmp: save_file({"trajectory": stacked}, str(tmp)))
        manifest["files"].append(name)
        manifest["sha256"][name] = sha256_file(out / name)
        manifest["num_params"] = int(stacked.shape[1])
        write_json(out / MANIFEST, dict(manifest, seconds=time.perf_counter() - started))
        log(f"expert {i + 1}/{experts} trained ({epochs} epochs)")
    bar.close()
    write_json(out / MANIFEST, dict(manifest, seconds=time.perf_counter() - started, finished=True))
    return out


class ExpertBuffer:
    """Read access to a folder of expert trajectories, one parameter row at a time."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.exists():
            raise DreamddError(f"no expert trajectories at {self.folder} (missing {MANIFEST}); train them first with "
                               "`dreamdd experts --dataset NAME --out DIR` and pass --set mtt.experts=DIR")
        self.manifest = read_json(path, fix=f"train the experts again (`dreamdd experts --resume {self.folder}` "
                                            "finishes a stopped training)")
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT \
                or not self.manifest.get("files") or not self.manifest.get("finished", "seconds" in self.manifest):
            raise DreamddError(f"{path} is not a finished dreamdd expert manifest; finish the training with "
                               f"`dreamdd experts --resume {self.folder}` or train the experts again")
        self.files = [self.folder / f for f in self.manifest["files"]]
        for file in self.files:
            recorded = (self.manifest.get("sha256") or {}).get(file.name)
            if not file.exists() or (recorded is not None and sha256_file(file) != recorded):
                raise DreamddError(f"{file} is missing or damaged (its sha256 does not match {MANIFEST}); train "
                                   "the experts again")
        self.epochs = int(self.manifest["epochs"])

    def __len__(self) -> int:
        return len(self.files)

    def check(self, config: Config, num_params: int) -> None:
        """Experts must come from the same network and input transform as the student."""
        want = model_record(config)
        if self.manifest["model"] != want:
            raise DreamddError(f"the experts in {self.folder} were trained with model {self.manifest['model']}, "
                               f"this run uses {want}; train experts with the same model settings")
        if bool(self.manifest["zca"]) != bool(config.mtt.zca):
            raise DreamddError(f"the experts in {self.folder} were trained with zca={self.manifest['zca']}; set "
                               f"mtt.zca={str(self.manifest['zca']).lower()} or train new experts")
        if int(self.manifest["num_params"]) != num_params:
            raise DreamddError(f"the experts in {self.folder} have {self.manifest['num_params']} parameters, the "
                               f"student has {num_params}; train experts for this dataset and model")

    def row(self, expert: int, epoch: int) -> torch.Tensor:
        """The flattened parameters of `expert` after `epoch` epochs."""
        with safe_open(str(self.files[expert]), framework="pt") as f:
            return f.get_slice("trajectory")[epoch:epoch + 1][0]


EXPERTS_RESUME_ACCEPTS = "--device and --quiet"


def experts(dataset: str | None = None, out: str | os.PathLike | None = None, *, experts: int | None = None,
            epochs: int | None = None, preset: str | None = None, overrides: dict[str, Any] | None = None,
            seed: int | None = None, device: str | None = None, data_root: str | None = None,
            resume: str | os.PathLike | None = None, quiet: bool = True) -> Path:
    """Train MTT expert trajectories for `dataset` with the model and mtt.* settings of its preset (or `preset`)
    and `overrides`; the same settings must be used when distilling with --set mtt.experts=OUT. `resume`
    finishes a stopped training in its folder (accepting only `device` and `quiet`)."""
    from . import data as datasets
    from .config import deep_update, dump_yaml, resolve
    from .devices import resolve_device
    if resume is not None:
        session = RunSession.resume("experts", resume, EXPERTS_RESUME_ACCEPTS, dict(
            dataset=dataset, out=out, experts=experts, epochs=epochs, preset=preset, overrides=overrides, seed=seed,
            data_root=data_root), quiet=quiet)
    else:
        if dataset is None or out is None:
            raise DreamddError("experts needs --dataset and --out (or --resume DIR)")
        named: dict[str, Any] = {}
        if seed is not None:
            named["seed"] = seed
        if data_root is not None:
            named["data"] = {"root": data_root}
        config = resolve(dataset, None, preset, deep_update(named, overrides or {}))
        experts, epochs = (5 if experts is None else experts), (50 if epochs is None else epochs)
        if experts < 1 or epochs < 1:
            raise DreamddError("experts need --experts >= 1 and --epochs >= 1")
        session = RunSession.create("experts", out, "experts", quiet=quiet)
    with session:
        if resume is not None:
            config = session.config()
            request = session.request()
            if session.status() == "finished":
                raise DreamddError(f"the experts in {session.path} are finished; nothing to resume")
            try:
                experts, epochs = int(request["experts"]), int(request["epochs"])
            except (KeyError, TypeError, ValueError):
                raise DreamddError(f"{session.file(REQUEST)} is damaged; train the experts again") from None
        else:
            session.begin({"command": "experts", "experts": experts, "epochs": epochs}, dump_yaml(config))
        log = (lambda message: None) if quiet else (lambda message: tqdm.write(message))
        with session.attempt():
            data = datasets.load_configured(config)
            out = train_experts(config, data, session.path, experts, epochs,
                                resolve_device(device or config.device), quiet, log)
            session.finish({"experts": experts, "epochs": epochs})
        return out
