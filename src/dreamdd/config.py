"""Run configuration: typed sections, YAML presets (with `extends`), `key=value` overrides and validation."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .augment import MODES as AUGMENT_MODES
from .errors import DreamddError
from .precision import PRECISIONS
from .protocols import PROTOCOL_KEYS, PROTOCOLS, SCHEDULES, protocol_settings
from .registry import METHODS


@dataclass
class DataConfig:
    dataset: str = "digits"
    root: str = "data"
    val_size: float = 0.1          # fraction (< 1) or count (>= 1) of the training set held out for validation
    download: bool = True
    verify: bool = False           # check checksums of files already on disk (downloads are always checked)
    image_size: int | None = None  # images read from files: shorter side resized, center-cropped (None: dataset's)


@dataclass
class ModelConfig:
    name: str = "convnet"
    width: int | None = None       # None: the model's default (ConvNet: 128)
    depth: int | None = None       # None: the model's default (ConvNet: 3)
    norm: str | None = None        # None: the model's default (ConvNet: instance)
    pooling: str | None = None


@dataclass
class SynthConfig:
    ipc: int = 10                  # stored images per class
    factor: int = 2                # multi-formation: each stored image holds factor x factor decoded images
    init: str = "representative"   # noise | real | representative
    lr: float | None = None        # image learning rate; None: lr_base * (ipc / 10) * (size / lr_base_size)^2
    lr_base: float = 5e-3
    lr_base_size: int = 32
    momentum: float = 0.5
    max_per_class: int = 128       # decoded synthetic images of a class taking part in one matching step


@dataclass
class MatchConfig:
    method: str = "idc"            # idc | dc | dsa | dm | mtt | dreamplus (see dreamdd.methods)
    metric: str = "mse"            # mse | l1
    batch_real: int = 128          # real images per class per matching step (= k-means clusters for DREAM)
    augment: str = "color_crop_cutout"   # DSA ops shared by the real and the synthetic batch; "" for none
    augment_mode: str = "idc"      # all | single | idc: which of the ops one call applies (see augment.MODES)


@dataclass
class DCConfig:
    """DC (Zhao et al. ICLR 2021) and DSA (Zhao & Bilen ICML 2021)."""
    outer_loop: int | None = None  # matching rounds per outer iteration; None: DC's rule by IPC (1:1, 10:10, 50:50)
    inner_loop: int | None = None  # epochs on the synthetic set between rounds; None: by IPC (1:1, 10:50, 50:10)
    batch_train: int = 256         # batch of the network's epochs on the synthetic set
    metric: str = "dc"             # dc (per-output-channel 1 - cosine) | mse | l1
    parameters: str = "all"        # all (DC) | conv (IDC)
    augment: str = "color_crop_cutout_flip_scale_rotate"   # DSA's siamese augmentation (method dsa only)
    augment_mode: str = "single"   # DSA's code: one op of the strategy per call (aug_mode 'S')


@dataclass
class DMConfig:
    """DM (Zhao & Bilen WACV 2023)."""
    augment: str = "color_crop_cutout_flip_scale_rotate"   # siamese augmentation of real and synthetic batches
    augment_mode: str = "single"   # DM's code: one op of the strategy per call (aug_mode 'S')


@dataclass
class MTTConfig:
    """MTT (Cazenavette et al. CVPR 2022) and its expert trajectories (`dreamdd experts`)."""
    experts: str | None = None     # folder written by `dreamdd experts`
    expert_epochs: int = 2         # M: the expert epochs the student must cover
    syn_steps: int = 20            # N: student steps on synthetic data per iteration
    max_start_epoch: int = 20      # start epoch drawn from [0, max_start_epoch)
    lr_lr: float = 1e-5            # learning rate of the learned student learning rate
    lr_teacher: float = 0.01       # the experts' SGD learning rate (and the learned lr's start)
    lr_init: float | None = None   # start of the learned lr; None: lr_teacher
    lr_min: float = 1e-8           # the learned lr is kept above this
    batch_syn: int | None = None   # synthetic images per student step; None: all
    augment: str = "color_crop_cutout_flip_scale_rotate"   # DSA per sample in the student's steps
    augment_mode: str = "single"   # MTT's code: one op of the strategy per call (aug_mode 'S')
    zca: bool = False              # ZCA-whiten network inputs (fitted on the training split; stored in the artifact)
    zca_eps: float = 0.1           # ZCA regularisation (as kornia's ZCAWhitening in MTT's code)
    expert_batch: int = 256        # `dreamdd experts`: SGD batch
    expert_momentum: float = 0.0
    expert_weight_decay: float = 0.0
    expert_augment: str = "color_crop_cutout_flip_scale_rotate"
    expert_augment_mode: str = "single"


@dataclass
class DreamPlusConfig:
    """DREAM+ (Liu et al. arXiv 2310.15052) on IDC's loop; n per sub-cluster is select.per_cluster."""
    feature_weight: float = 1.0    # mean-embedding term of the bidirectional loss
    gradient_weight: float = 1.0   # gradient term
    warmup_epochs: int = 1         # epochs on real data after each network initialisation
    warmup_images: int | None = None   # cap on the warm-up's images (None: warmup_epochs full epochs)


@dataclass
class SelectConfig:
    selector: str = "dream"        # dream | random
    per_cluster: int = 1           # samples taken near each centroid (DREAM+: n > 1)
    interval: int = 10             # inner iterations between re-clusterings
    pool_size: int | None = None   # None: cluster the whole class (the paper); else a random pool of this size
    kmeans_init: str = "kmeans++"  # kmeans++ | random
    kmeans_iter: int = 100
    kmeans_tol: float = 1e-4


@dataclass
class DistillConfig:
    iterations: int = 2000         # outer iterations, each with a freshly initialised network
    inner_loop: int = 100          # rounds of {one matching step per class, network update}
    net_lr: float = 0.01
    net_momentum: float = 0.9
    net_weight_decay: float = 5e-4
    net_batch: int = 128
    n_data: int = 2000             # real images the network trains on between matching rounds
    net_augment: str = "color_crop"
    net_augment_mode: str = "idc"  # IDC's DiffAug (color always, then crop: the same as all for color_crop)
    cutmix_prob: float = 0.5
    eval_every: int = 100          # outer iterations between periodic evaluations (0: none)
    eval_repeats: int = 1          # networks per periodic evaluation
    eval_epochs: int | None = None # epochs per periodic evaluation (None: eval.epochs)
    checkpoint_every: int = 10     # outer iterations between checkpoints
    snapshot_every: int = 0        # outer iterations between snapshots of the set (0: none; also saves iteration 0)
    max_minutes: float | None = None   # wall-time deadline of the loop (engine.callbacks.TimeBudget)
    budget_minutes: float | None = None   # set by --budget: the whole budget the run was planned for (budget.json)
    budget_calibrate: bool = True  # --budget: choose the image lr on validation probes (false: keep the preset's)


@dataclass
class EvalConfig:
    protocol: str = "idc"          # named recipe (dreamdd.protocols); setting it first resets the settings it fixes
    model: str | None = None       # None: the distillation model
    epochs: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch: int = 64
    augment: str = "color_crop_flip_scale_rotate"
    augment_mode: str = "idc"      # all | single | idc (see augment.MODES)
    cutmix_prob: float = 0.5
    cutmix_beta: float = 1.0
    lr_schedule: str = "idc"       # idc: x0.2 at 2/3 and 5/6 of the epochs; half: x0.1 at half
    learned_lr: bool = False       # train with the set's learned learning rate (MTT's) instead of lr
    repeats: int = 3
    val_every: int = 50            # epochs between validation passes that choose the checkpoint
    patience: int = 0              # stop after this many validation passes without improvement (0: never)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dc: DCConfig = field(default_factory=DCConfig)
    dm: DMConfig = field(default_factory=DMConfig)
    mtt: MTTConfig = field(default_factory=MTTConfig)
    dreamplus: DreamPlusConfig = field(default_factory=DreamPlusConfig)
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"        # fp32 | bf16 | auto (dreamdd.precision; auto is resolved when a run is created)
    deterministic: bool = False    # deterministic algorithms, for identical bytes on CUDA too (dreamdd.determinism)
    compile: bool = False          # the networks' plain forwards compiled with torch.compile (dreamdd.compilation)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        config = cls()
        merge(config, data, origin="config")
        validate(config)
        return config

    def image_lr(self, image_size: int) -> float:
        """The synthetic-image learning rate: explicit; else the method's paper value (DC/DSA 0.1, DM 1.0, MTT
        1000, each in the method's own image space, see Method.image_space), or IDC's scaling with IPC and image
        size (pixels)."""
        if self.synth.lr is not None:
            return self.synth.lr
        if self.match.method in METHOD_IMAGE_LR:
            return METHOD_IMAGE_LR[self.match.method]
        return self.synth.lr_base * (self.synth.ipc / 10) * (image_size / self.synth.lr_base_size) ** 2


def model_options(config: Config) -> dict[str, Any]:
    """The model's keyword settings that the config sets (None means: the model's default)."""
    m = config.model
    return {k: v for k, v in {"width": m.width, "depth": m.depth, "norm": m.norm, "pooling": m.pooling}.items()
            if v is not None}


SECTIONS = ("data", "model", "synth", "match", "select", "distill", "eval", "dc", "dm", "mtt", "dreamplus")
# the original papers' image learning rates, used when synth.lr is unset (IDC and DREAM+ scale with IPC instead)
METHOD_IMAGE_LR = {"dc": 0.1, "dsa": 0.1, "dm": 1.0, "mtt": 1000.0}


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or say which key was wrong."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
        if optional:
            return None
        raise DreamddError(f"{key} cannot be empty; give it a value")
    base = [a for a in args if a is not type(None)] if args else [annotation]
    for kind in base:
        try:
            if kind is bool:
                if isinstance(value, bool):
                    return value
                if str(value).lower() in ("true", "yes", "1", "on"):
                    return True
                if str(value).lower() in ("false", "no", "0", "off"):
                    return False
                continue
            if kind is int:
                if isinstance(value, bool):
                    continue
                if isinstance(value, float) and not value.is_integer():
                    continue
                return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
            if kind is float:
                return float(value)
            if kind is str:
                return str(value)
        except (TypeError, ValueError):
            continue
    names = " or ".join(getattr(k, "__name__", str(k)) for k in base)
    raise DreamddError(f"{key}={value!r} is not a valid {names}; fix the value")


def merge(config: Config, data: dict[str, Any], origin: str) -> None:
    """Write a nested mapping (from YAML or overrides) into `config`, checking every key against the schema."""
    if not isinstance(data, dict):
        raise DreamddError(f"{origin}: expected a mapping of settings, got {type(data).__name__}")
    top_types = _field_types(config)
    for name, value in data.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise DreamddError(f"{origin}: '{name}' must be a mapping of settings")
            section = getattr(config, name)
            types = _field_types(section)
            if name == "eval" and value.get("protocol") is not None:   # a protocol first, its changes after
                protocol = _coerce(value["protocol"], types["protocol"], "eval.protocol")
                for key, sub in protocol_settings(protocol).items():
                    setattr(section, key, sub)
            for key, sub in value.items():
                if key not in types:
                    raise DreamddError(f"{origin}: unknown setting '{name}.{key}'; known: "
                                       + ", ".join(f"{name}.{k}" for k in types))
                setattr(section, key, _coerce(sub, types[key], f"{name}.{key}"))
        elif name in top_types:
            setattr(config, name, _coerce(value, top_types[name], name))
        elif name != "extends":
            raise DreamddError(f"{origin}: unknown setting '{name}'; sections are {', '.join(sorted(SECTIONS))}"
                               " and top-level keys are seed, device, precision, deterministic, compile, preset")


def safe_yaml(text: str, origin: str) -> Any:
    """YAML as plain data (no tags that build objects); a syntax error or a tag is a DreamddError naming `origin`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DreamddError(f"{origin} is not valid plain YAML ({problem}); fix it (tags such as !!python are "
                           "not allowed)") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['select.interval=5', 'seed=3'] -> {'select': {'interval': '5'}, 'seed': '3'} (values typed later)."""
    result: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DreamddError(f"--set {item!r}: expected key=value, e.g. --set select.interval=5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) > 2 or not all(parts):
            raise DreamddError(f"--set {item!r}: keys look like section.name (e.g. synth.lr) or seed")
        parsed = safe_yaml(value, f"--set {item!r}") if value.strip() else None
        if len(parts) == 1:
            result[parts[0]] = parsed
        else:
            result.setdefault(parts[0], {})[parts[1]] = parsed
    return result


# ---- presets ---------------------------------------------------------------------------------------------

def preset_dir() -> Path:
    return Path(str(resources.files("dreamdd") / "presets"))


# Presets that only set the IPC of a dataset's preset are generated, not files: `<dataset>-ipc<N>` for each N.
IPC_PRESETS = {"mnist": (1, 10, 50), "fashion-mnist": (1, 10, 50), "svhn": (1, 10, 50), "cifar10": (1, 10, 50),
               "cifar100": (1, 10, 50), "tiny-imagenet": (1, 10), "imagenet-10": (10, 20),
               "imagenet-100": (10, 20)}
_GENERATED = {f"{dataset}-ipc{ipc}": (dataset, ipc) for dataset, ipcs in IPC_PRESETS.items() for ipc in ipcs}


def list_presets() -> dict[str, str]:
    """Preset name -> its first comment line (what it is for)."""
    out = {name: f"{dataset} at IPC {ipc}, with the settings of {dataset}.yaml (generated)"
           for name, (dataset, ipc) in _GENERATED.items()}
    for path in preset_dir().glob("*.yaml"):
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        out[path.stem] = first.lstrip("# ").strip()
    return dict(sorted(out.items(), key=lambda item: f"{item[0]}.yaml"))   # as the files were listed


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset's settings with its `extends` chain resolved (later files win)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else preset_dir() / f"{name}.yaml"
    if not path.exists() and name in _GENERATED:
        dataset, ipc = _GENERATED[name]
        return deep_update(load_preset(dataset, _seen + (name,)), {"synth": {"ipc": ipc}})
    if not path.exists():
        raise DreamddError(f"unknown preset '{name}'; known presets: {', '.join(list_presets())} "
                           "(or give the path of a .yaml file)")
    if name in _seen:
        raise DreamddError(f"preset '{name}' extends itself through {' -> '.join(_seen)}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DreamddError(f"preset {name} is not UTF-8 text; fix or replace the file") from None
    data = safe_yaml(text, f"preset {name}") or {}
    if not isinstance(data, dict):
        raise DreamddError(f"preset {name}: expected a mapping of settings, got {type(data).__name__}")
    parent = data.get("extends")
    if parent is None:
        return data
    base = load_preset(parent, _seen + (name,))
    return deep_update(base, {k: v for k, v in data.items() if k != "extends"})


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = deep_update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


OWN_DATA_PRESET = "own-data"


def default_preset(dataset: str, ipc: int | None) -> str:
    """The preset chosen when none is named: `<dataset>-ipc<N>` if it exists, else `<dataset>`, else own-data
    (a user's dataset: settings sized for a CPU, no flip in evaluation; never the paper's full schedule)."""
    names = list_presets()
    canonical = dataset.lower().replace("_", "-")
    for candidate in (f"{canonical}-ipc{ipc}" if ipc is not None else None, canonical):
        if candidate and candidate in names:
            return candidate
    return OWN_DATA_PRESET


def protocol_eval(name: str, dataset: str | None = None) -> dict[str, Any]:
    """The settings evaluation protocol `name` fixes for `dataset`: its dataset preset's when that preset
    evaluates under this protocol (it holds the dataset's exceptions, e.g. no flip on MNIST), else the
    protocol's own (protocols.PROTOCOLS)."""
    if dataset:
        preset = default_preset(dataset, None)
        config = Config()
        merge(config, {"eval": load_preset(preset).get("eval", {})}, origin=f"preset {preset}")
        if config.eval.protocol == name:
            return {k: getattr(config.eval, k) for k in PROTOCOL_KEYS}
    return protocol_settings(name)


def resolve(dataset: str | None = None, ipc: int | None = None, preset: str | None = None,
            overrides: dict[str, Any] | None = None) -> Config:
    """Defaults <- preset <- dataset/ipc <- overrides, validated. The result says which preset it used."""
    config = Config()
    if preset is None and dataset is not None:
        preset = default_preset(dataset, ipc)
    if preset is not None:
        merge(config, load_preset(preset), origin=f"preset {preset}")
        config.preset = preset
    if dataset is not None:
        config.data.dataset = dataset
    if ipc is not None:
        config.synth.ipc = ipc
    if overrides:
        merge(config, overrides, origin="--set")
    validate(config)
    return config


DISTILL_SELECTORS = ("dream", "representative", "random")   # the loop's real batches: DREAM's or random
INITS = ("noise", "real", "representative")
CHOICES = {
    ("synth", "init"): INITS,
    ("match", "metric"): ("mse", "l1", "dc"),
    ("match", "method"): tuple(METHODS),
    ("dc", "metric"): ("dc", "mse", "l1"),
    ("dc", "parameters"): ("all", "conv"),
    ("select", "selector"): DISTILL_SELECTORS,
    ("select", "kmeans_init"): ("kmeans++", "random"),
    ("eval", "protocol"): tuple(PROTOCOLS),
    ("eval", "lr_schedule"): SCHEDULES,
    **{(section, key): AUGMENT_MODES for section, key in (
        ("match", "augment_mode"), ("distill", "net_augment_mode"), ("dc", "augment_mode"), ("dm", "augment_mode"),
        ("mtt", "augment_mode"), ("mtt", "expert_augment_mode"), ("eval", "augment_mode"))},
}
POSITIVE = [("synth", "ipc"), ("synth", "factor"), ("synth", "max_per_class"), ("match", "batch_real"),
            ("select", "per_cluster"), ("select", "interval"), ("select", "kmeans_iter"),
            ("distill", "inner_loop"), ("distill", "net_batch"), ("distill", "checkpoint_every"),
            ("distill", "eval_repeats"), ("eval", "epochs"), ("eval", "batch"), ("eval", "repeats"),
            ("eval", "val_every"), ("dc", "batch_train"), ("mtt", "expert_epochs"), ("mtt", "syn_steps"),
            ("mtt", "max_start_epoch"), ("mtt", "expert_batch")]


def validate(config: Config) -> None:
    """Reject settings that cannot work, naming the key and what it accepts."""
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise DreamddError(f"{section}.{key}={value!r} is not one of {', '.join(allowed)}")
    for section, key in POSITIVE:
        value = getattr(getattr(config, section), key)
        if value is None or value < 1:
            raise DreamddError(f"{section}.{key} must be a positive integer, got {value!r}")
    if config.eval.patience < 0:
        raise DreamddError("eval.patience must be >= 0 (0 disables early stopping)")
    for key in ("outer_loop", "inner_loop"):
        value = getattr(config.dc, key)
        if value is not None and value < (1 if key == "outer_loop" else 0):
            raise DreamddError(f"dc.{key} must be {'positive' if key == 'outer_loop' else '>= 0'} (or none for "
                               f"DC's rule by IPC), got {value!r}")
    if config.mtt.batch_syn is not None and config.mtt.batch_syn < 1:
        raise DreamddError("mtt.batch_syn must be a positive integer (or none for all synthetic images)")
    if config.mtt.lr_teacher <= 0 or config.mtt.lr_lr < 0 or config.mtt.zca_eps < 0:
        raise DreamddError("mtt.lr_teacher must be positive, mtt.lr_lr and mtt.zca_eps >= 0")
    if config.dreamplus.warmup_epochs < 0 or (config.dreamplus.warmup_images or 0) < 0:
        raise DreamddError("dreamplus.warmup_epochs and dreamplus.warmup_images must be >= 0")
    if config.distill.iterations < 0:
        raise DreamddError("distill.iterations must be >= 0")
    if config.select.per_cluster > config.match.batch_real:
        raise DreamddError("select.per_cluster cannot exceed match.batch_real")
    if not 0 <= config.distill.cutmix_prob <= 1 or not 0 <= config.eval.cutmix_prob <= 1:
        raise DreamddError("cutmix_prob must lie in [0, 1]")
    if config.data.val_size < 0:
        raise DreamddError("data.val_size must be >= 0 (a fraction below 1, or a count)")
    if config.device not in ("auto", "cpu", "cuda", "mps") and not config.device.startswith("cuda:"):
        raise DreamddError(f"device={config.device!r}: use auto, cpu, cuda, cuda:N or mps")
    if config.precision not in PRECISIONS:
        raise DreamddError(f"precision={config.precision!r}: use one of {', '.join(PRECISIONS)}")
    if config.distill.max_minutes is not None and config.distill.max_minutes <= 0:
        raise DreamddError("distill.max_minutes must be positive (or none for no time budget)")
    if config.synth.lr is not None and config.synth.lr <= 0:
        raise DreamddError("synth.lr must be positive")


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


RESUMABLE = (("distill", "iterations"), ("device", None))   # what a resumed run may change


def fingerprint(config: Config) -> str:
    """A digest of the settings that decide a run's result (all but those in RESUMABLE): a checkpoint records
    it, so that it is refused by a run with other settings."""
    import hashlib
    import json
    settings = config.to_dict()
    for section, key in RESUMABLE:
        if key is None:
            settings.pop(section, None)
        else:
            settings[section].pop(key, None)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
