"""Models by name (timm style, in dreamdd.registry.MODELS): factories register under a name; create_model builds
one from a config."""
from __future__ import annotations

import inspect

from torch import nn

from ..errors import DreamddError
from ..registry import MODELS


def register_model(name: str | None = None):
    """Decorator: register a factory `fn(num_classes, channels, image_size, **options) -> nn.Module`
    under `name` (default: the function's name)."""
    return MODELS.register(name)


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, num_classes: int, channels: int, image_size: tuple[int, int] | int,
                 **kwargs) -> nn.Module:
    """Build a registered model; options set to None are dropped so that the factory's defaults apply."""
    factory = MODELS[name]
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
