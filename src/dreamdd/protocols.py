"""Named evaluation protocols: each framework's published recipe for training fresh networks on a distilled set.

Numbers from different protocols are not comparable (epochs, batch, augmentation, CutMix, learning-rate schedule
and learned rate all move accuracy by points), so every evaluation records the protocol it ran under, and a
recipe that departs from its protocol says so (see describe()).

Common to all: SGD lr 0.01, momentum 0.9, weight decay 5e-4. Then, from the released code:
- idc (IDC / DREAM / DREAM+, `train.py`, `misc/augment.py`): 1000 epochs, batch 64, DSA
  color_crop_flip_scale_rotate with flip and color always and ONE of crop, scale, rotate per batch (mode idc),
  CutMix p 0.5 (beta 1), lr x0.2 at 2/3 and 5/6 of the epochs. The MNIST and SVHN presets drop flip, as the
  authors' do; on MNIST with factor > 1 CutMix is off (`misc/reproduce.py`).
- dc (DC, `utils.py` `evaluate_synset` with `epoch_eval_train` 300): 300 epochs, batch 256, no augmentation
  (DC's `get_daparam` gives ConvNet none; its MNIST-only crop_scale_rotate is not reproduced), lr x0.1 at half.
- dsa, dm (DSA `main.py`, DM `main_DM.py`): 1000 epochs, batch 256, DSA color_crop_cutout_flip_scale_rotate with
  ONE op per batch (aug_mode 'S', mode single), no CutMix, lr x0.1 at half.
- mtt (MTT `utils.py` `evaluate_synset`): as dsa, but with the set's learned learning rate.
The originals test the last epoch (MTT) or report the best of a few test points (DREAM); dreamdd chooses the
checkpoint on the validation split and reports the last epoch's test accuracy beside it, never choosing on test.
"""
from __future__ import annotations

from typing import Any

from .errors import DreamddError
from .registry import Registry

_SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
_DSA = {"epochs": 1000, "batch": 256, **_SGD, "augment": "color_crop_cutout_flip_scale_rotate",
        "augment_mode": "single", "cutmix_prob": 0.0, "cutmix_beta": 1.0, "lr_schedule": "half",
        "learned_lr": False}

PROTOCOLS = Registry("evaluation protocol", {
    "idc": {"epochs": 1000, "batch": 64, **_SGD, "augment": "color_crop_flip_scale_rotate", "augment_mode": "idc",
            "cutmix_prob": 0.5, "cutmix_beta": 1.0, "lr_schedule": "idc", "learned_lr": False},
    "dc": {**_DSA, "epochs": 300, "augment": ""},
    "dsa": dict(_DSA),
    "dm": dict(_DSA),
    "mtt": {**_DSA, "learned_lr": True},
})
# the evaluation settings a protocol fixes; the rest (model, repeats, val_every, patience) are how many networks
# and how dreamdd chooses their checkpoint
PROTOCOL_KEYS = tuple(PROTOCOLS["idc"])
SCHEDULES = ("idc", "half")
# each method's own protocol: what its paper evaluated with
METHOD_PROTOCOL = {"idc": "idc", "dreamplus": "idc", "dc": "dc", "dsa": "dsa", "dm": "dm", "mtt": "mtt"}


def protocol_settings(name: str) -> dict[str, Any]:
    """The settings protocol `name` fixes (a copy)."""
    if name not in PROTOCOLS:
        raise DreamddError(f"unknown evaluation protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return dict(PROTOCOLS[name])


# The learning-rate schedules: (fractions of the epochs after which the lr is multiplied, the factor).
IDC_SCHEDULE = ((2, 3), (5, 6)), 0.2      # IDC's train.py: x0.2 at 2/3 and 5/6 of the epochs
HALF_SCHEDULE = ((1, 2),), 0.1            # DC, DSA, DM and MTT: x0.1 at half of the epochs


def lr_milestones(schedule: str, epochs: int) -> tuple[list[int], float]:
    """(epochs after which the lr is multiplied, the factor) of a named schedule."""
    if schedule in ("idc", "half"):
        fractions, gamma = IDC_SCHEDULE if schedule == "idc" else HALF_SCHEDULE
        return sorted({max(1, epochs * num // den) for num, den in fractions}), gamma
    raise DreamddError(f"unknown lr schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")


def describe(recipe: dict[str, Any], reference: dict[str, Any] | None = None) -> str:
    """The protocol's name, with every setting that departs from it: 'dc' or 'dc (epochs=150, batch=64)'.
    `reference` is what the name stands for here (default: the protocol's own settings)."""
    name = recipe.get("protocol") or "unnamed"
    if name not in PROTOCOLS:
        return name
    reference = protocol_settings(name) if reference is None else reference
    changed = [f"{k}={recipe[k]!r}" if isinstance(recipe[k], str) else f"{k}={recipe[k]}"
               for k in PROTOCOL_KEYS if k in recipe and k in reference and recipe[k] != reference[k]]
    return f"{name} ({', '.join(changed)})" if changed else name
