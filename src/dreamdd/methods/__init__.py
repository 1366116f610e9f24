"""Distillation methods behind one interface (Method): IDC, DC, DSA, DM, MTT and DREAM+, each combinable with
every selector and initialiser; named in dreamdd.registry.METHODS."""
from .base import Method, create_method, learned_eval_settings, list_methods
from .context import MethodContext
from .gradient import GradientMatching, feature_distance, gradient_distance
from .idc import IDC  # noqa: E402  (registers "idc")
from .dc import DC, DSA, dc_loops  # noqa: E402  (registers "dc", "dsa")
from .dm import DM  # noqa: E402  (registers "dm")
from .dreamplus import DreamPlus  # noqa: E402  (registers "dreamplus")
from .mtt import MTT  # noqa: E402  (registers "mtt")

__all__ = ["DC", "DM", "DSA", "DreamPlus", "GradientMatching", "IDC", "MTT", "Method", "MethodContext",
           "create_method", "dc_loops", "feature_distance", "gradient_distance", "learned_eval_settings",
           "list_methods"]
