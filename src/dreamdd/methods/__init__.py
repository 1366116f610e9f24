"""Matching objectives: what a synthetic batch must reproduce of a real batch, one module each."""
from .base import MatchingMethod, create_method, list_methods
from .gradient import GradientMatching

__all__ = ["MatchingMethod", "GradientMatching", "create_method", "list_methods"]
