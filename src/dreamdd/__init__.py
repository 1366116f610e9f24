"""dreamdd: dataset distillation with representative matching (DREAM), on CPU and GPU.

The public API: distill(), evaluate(), evaluate_models(), evaluate_whole_dataset(), select(), load_distilled(),
Config, DreamddError.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {"distill": "api", "evaluate": "api", "evaluate_models": "api", "evaluate_whole_dataset": "api",
            "select": "api", "RunResult": "api", "load_distilled": "artifact",
            "Distilled": "artifact", "Config": "config", "DreamddError": "errors"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the heavy parts (torch) only when the API is used, so `dreamdd --help` stays instant."""
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'dreamdd' has no attribute {name!r}")
