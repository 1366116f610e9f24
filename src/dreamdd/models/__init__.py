"""Networks by name: the registry and the DC/IDC ConvNet family."""
from .registry import create_model, list_models, matching_parameters, register_model
from .convnet import ConvNet  # noqa: E402  (importing registers the ConvNet models)

__all__ = ["ConvNet", "create_model", "list_models", "matching_parameters", "register_model"]
