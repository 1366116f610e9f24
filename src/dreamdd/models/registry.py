"""Model registry (timm style): factories register under a name; create_model builds one from a config."""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from ..errors import DreamddError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str | None = None):
    """Decorator: register a factory `fn(num_classes, channels, image_size, **options) -> nn.Module`
    under `name` (default: the function's name)."""
    def wrap(factory):
        key = name or factory.__name__
        if key in _MODELS and _MODELS[key] is not factory:
            raise ValueError(f"model name '{key}' is already registered")
        _MODELS[key] = factory
        return factory
    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, num_classes: int, channels: int, image_size: tuple[int, int] | int,
                 **kwargs) -> nn.Module:
    """Build a registered model; options set to None are dropped so that the factory's defaults apply."""
    if name not in _MODELS:
        raise DreamddError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    factory = _MODELS[name]
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = (int(image_size[0]), int(image_size[1]))
    options = {k: v for k, v in kwargs.items() if v is not None}
    try:
        inspect.signature(factory).bind(num_classes, channels, image_size, **options)
    except TypeError:
        accepted = [p for p in inspect.signature(factory).parameters
                    if p not in ("num_classes", "channels", "image_size")]
        raise DreamddError(f"model '{name}' does not accept the options {sorted(options)}; "
                           f"its options are: {', '.join(accepted) or 'none'}") from None
    return factory(num_classes, channels, image_size, **options)


def matching_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters whose gradients IDC/DREAM match: conv weights only (4-D), no biases, norms or classifier."""
    return [p for p in model.parameters() if p.dim() == 4]
